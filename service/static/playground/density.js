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
  if (!e) return { kind: "none", reason: `${scheme} draws nothing: its values are fixed` };
  const family = familyOf(scheme, init);
  const mu = typeof (init && init.mean) === "number" ? init.mean : 0;
  switch (family) {
    case "uniform":
      return { kind: "uniform", low: e.low, high: e.high };
    case "normal":
      return { kind: "normal", mu: e.mean, sigma: stats.std_used ?? e.std };
    case "truncated":
      return { kind: "truncated", mu, sigma: stats.std_used ?? e.std, low: e.low, high: e.high };
    case "point":
      return { kind: "point", value: e.mean };
    case "sparse":
      return { kind: "sparse", mu: 0, sigma: stats.std_used, zeros: stats.zero_fraction ?? 0 };
    case "orthogonal":
      return { kind: "orthogonal", mu: 0, sigma: e.std, low: e.low, high: e.high };
    default:
      if (stats.bound !== null && stats.bound !== undefined) return { kind: "uniform", low: e.low, high: e.high };
      if (e.std === 0) return { kind: "point", value: e.mean };
      return { kind: "normal", mu: e.mean, sigma: e.std };
  }
}

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): ample for drawing a curve.
function erf(x) {
  const sign = x < 0 ? -1 : 1;
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return sign * y;
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
