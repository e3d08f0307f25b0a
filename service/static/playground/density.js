// What a scheme's elements are drawn from, as something to draw over the histogram.
//
// theoryFor() returns one of
//   {kind: "normal", mu, sigma}                    N(mu, sigma^2)
//   {kind: "truncated", mu, sigma, low, high}      N(mu, sigma^2) restricted to [low, high]
//   {kind: "uniform", low, high}                   U(low, high)
//   {kind: "sparse", mu: 0, sigma, zeros}          zeros, else N(0, sigma^2)
//   {kind: "orthogonal", mu: 0, sigma, low, high}  entries of a scaled orthogonal matrix (about normal)
//   {kind: "point", value}                         every element the same
//   {kind: "none", reason}                         nothing is drawn (eye, dirac) or nothing is known
// from the scheme, its recipe and the stats the service computed (std_used, bound, expected).
// Every kind also has `center` and `spread`: the mean and std of the distribution actually drawn
// (for a truncated normal its own mean and std, not the parent's mu and sigma), which the
// +-k sigma bands and the 68-95-99.7 rule use. With no distribution (eye, dirac) they are the
// sample's mean and std, and `sample` is true.

const FAMILY = {
  uniform: "uniform",
  xavier_uniform: "uniform",
  kaiming_uniform: "uniform",
  lecun_uniform: "uniform",
  normal: "normal",
  xavier_normal: "normal",
  kaiming_normal: "normal",
  trunc_normal: "truncated",
  trunc_normal_tf: "truncated",
  lecun_normal: "truncated",
  constant: "point",
  ones: "point",
  zeros: "point",
  eye: "none",
  dirac: "none",
  orthogonal: "orthogonal",
  sparse: "sparse",
};
const VARIANCE_SCALING = { truncated_normal: "truncated", normal: "normal", uniform: "uniform" };

/** "uniform" | "normal" | "truncated" | "point" | "none" | "orthogonal" | "sparse" */
export function familyOf(scheme, init) {
  if (scheme === "variance_scaling") return VARIANCE_SCALING[(init && init.distribution) || "truncated_normal"];
  return FAMILY[scheme] ?? "unknown";
}

export function theoryFor(scheme, init, stats) {
  const e = stats.expected;
  if (!e) {
    return { kind: "none", reason: `${scheme} draws nothing: its values are fixed`, center: stats.mean, spread: stats.std, sample: true };
  }
  const family = familyOf(scheme, init);
  const mu = typeof (init && init.mean) === "number" ? init.mean : 0;
  const drawn = { center: e.mean, spread: e.std };
  switch (family) {
    case "uniform":
      return { kind: "uniform", low: e.low, high: e.high, ...drawn };
    case "normal":
      return { kind: "normal", mu: e.mean, sigma: stats.std_used ?? e.std, ...drawn };
    case "truncated":
      return { kind: "truncated", mu, sigma: stats.std_used ?? e.std, low: e.low, high: e.high, ...drawn };
    case "point":
      return { kind: "point", value: e.mean, center: e.mean, spread: 0 };
    case "sparse": {
      // Each column gets ceil(sparsity * rows) zeros, so the expected std fixes the share of zeros.
      const sigma = stats.std_used;
      const zerosExpected = sigma > 0 ? Math.min(1, Math.max(0, 1 - (e.std / sigma) ** 2)) : 0;
      return { kind: "sparse", mu: 0, sigma, zeros: stats.zero_fraction ?? 0, zerosExpected, ...drawn };
    }
    case "orthogonal":
      return { kind: "orthogonal", mu: 0, sigma: e.std, low: e.low, high: e.high, ...drawn };
    default:
      if (stats.bound !== null && stats.bound !== undefined) return { kind: "uniform", low: e.low, high: e.high, ...drawn };
      if (e.std === 0) return { kind: "point", value: e.mean, center: e.mean, spread: 0 };
      return { kind: "normal", mu: e.mean, sigma: e.std, ...drawn };
  }
}

/**
 * erf to about 1e-15: its Taylor series below 2.5, else 1 - erfc from erfc's continued fraction.
 * Exact enough that the rule table's expected shares round as scipy's do.
 */
export function erf(x) {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  const sign = x < 0 ? -1 : 1;
  if (a < 2.5) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 80; n += 1) {
      term *= (-a * a) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (sign * 2 * sum) / Math.sqrt(Math.PI);
  }
  if (a > 6) return sign;
  // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...))))), by Lentz.
  const tiny = 1e-300;
  let f = a;
  let c = a;
  let d = 0;
  for (let n = 1; n < 200; n += 1) {
    const coef = n / 2;
    d = a + coef * d;
    d = Math.abs(d) < tiny ? tiny : d;
    c = a + coef / c;
    c = Math.abs(c) < tiny ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return sign * (1 - erfc);
}

export function normalCdf(z) {
  return 0.5 * (1 + erf(z / Math.SQRT2));
}

export function normalPdf(x, mu, sigma) {
  const z = (x - mu) / sigma;
  return Math.exp(-0.5 * z * z) / (sigma * Math.sqrt(2 * Math.PI));
}

/**
 * The expected count per bin as a function of x (density x elements x bin width), or null when
 * there is no density to draw. Point masses and the zeros of `sparse` are drawn as spikes instead.
 */
export function expectedCounts(theory, numel, binWidth) {
  const scale = numel * binWidth;
  switch (theory.kind) {
    case "normal":
    case "orthogonal":
      if (!(theory.sigma > 0)) return null;
      return (x) => scale * normalPdf(x, theory.mu, theory.sigma);
    case "sparse":
      if (!(theory.sigma > 0)) return null;
      return (x) => scale * (1 - theory.zeros) * normalPdf(x, 0, theory.sigma);
    case "truncated": {
      if (!(theory.sigma > 0)) return null;
      const mass = normalCdf((theory.high - theory.mu) / theory.sigma) - normalCdf((theory.low - theory.mu) / theory.sigma);
      if (!(mass > 0)) return null;
      return (x) => (x < theory.low || x > theory.high ? 0 : (scale * normalPdf(x, theory.mu, theory.sigma)) / mass);
    }
    case "uniform":
      if (!(theory.high > theory.low)) return null;
      return (x) => (x < theory.low || x > theory.high ? 0 : scale / (theory.high - theory.low));
    default:
      return null;
  }
}

/** A one-line name for the distribution, for the legend. */
export function describe(theory, fmt) {
  switch (theory.kind) {
    case "normal":
      return `N(${fmt(theory.mu)}, ${fmt(theory.sigma)}\u00b2)`;
    case "truncated":
      return `N(${fmt(theory.mu)}, ${fmt(theory.sigma)}\u00b2) truncated to [${fmt(theory.low)}, ${fmt(theory.high)}]`;
    case "uniform":
      return `U(${fmt(theory.low)}, ${fmt(theory.high)})`;
    case "sparse":
      return `${fmt(theory.zeros * 100, 3)}% zeros, else N(0, ${fmt(theory.sigma)}\u00b2)`;
    case "orthogonal":
      return `about N(0, ${fmt(theory.sigma)}\u00b2): rows of a scaled orthogonal matrix`;
    case "point":
      return `every element = ${fmt(theory.value)}`;
    default:
      return theory.reason || "no density";
  }
}

/**
 * The share of the distribution within `k` spreads of its center (the 68-95-99.7 rule), as
 * {value, approx, note}, or null when nothing is promised (eye, dirac: observed only).
 */
export function expectedShare(theory, k) {
  const half = k * theory.spread;
  switch (theory.kind) {
    case "normal":
      return { value: erf(k / Math.SQRT2) };
    case "orthogonal":
      return { value: erf(k / Math.SQRT2), approx: true, note: "The entries of a random orthogonal matrix are close to normal for large matrices, so the normal's shares are what to expect, approximately." };
    case "truncated": {
      const cdf = (v) => normalCdf((v - theory.mu) / theory.sigma);
      const mass = cdf(theory.high) - cdf(theory.low);
      const lo = Math.max(theory.low, theory.center - half);
      const hi = Math.min(theory.high, theory.center + half);
      return { value: hi > lo ? Math.min(1, (cdf(hi) - cdf(lo)) / mass) : 0 };
    }
    case "uniform": {
      const width = (theory.high - theory.low) / 2;
      return { value: width > 0 ? Math.min(1, half / width) : 1 };
    }
    case "sparse": {
      const z = theory.zerosExpected;
      return { value: z + (1 - z) * erf(half / (theory.sigma * Math.SQRT2)) };
    }
    case "point":
      return { value: 1 };
    default:
      return null;
  }
}

/** What the rule table's note says about the expected column, per kind. */
export function ruleNote(theory) {
  switch (theory.kind) {
    case "normal":
      return "A normal has 68.27 %, 95.45 % and 99.73 % of its values within 1, 2 and 3 standard deviations of its mean.";
    case "truncated":
      return "σ here is the truncated distribution's own std, not the std of the normal it was cut from; its expected shares are the truncated distribution's own mass within each band (all of it beyond the cut-offs).";
    case "uniform":
      return "A uniform on [c − b, c + b] has σ = b/√3, so the share within kσ is min(1, kσ/b): 57.74 % within 1σ and everything within 2σ. Not the normal's 68-95-99.7.";
    case "sparse":
      return `About ${(theory.zerosExpected * 100).toFixed(2)} % of the values are exactly 0 (inside every band); the rest are N(0, ${theory.sigma}²). σ is that mixture's std.`;
    case "orthogonal":
      return expectedShare(theory, 1).note;
    case "point":
      return "Every value equals the mean, so σ = 0 and every band holds 100 %.";
    default:
      return "This scheme draws nothing (fixed values), so nothing is expected: the observed shares are around the sample's mean, in units of the sample's std.";
  }
}
