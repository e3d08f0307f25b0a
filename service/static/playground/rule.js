// The 68-95-99.7 rule: the share of a tensor's values within 1, 2 and 3 sigma of the mean,
// observed against what the distribution drawn promises. The observed shares are counted from
// the tensor's own bytes (the safetensors file of the same recipe, GET /v1/tensor), exactly;
// a tensor too large to fetch is estimated from its histogram, and says so.

import { expectedShare } from "./density.js";

export const RULE_KS = [1, 2, 3];
/** Tensors up to this many bytes (4M float32 elements) are fetched and counted exactly. */
export const COUNT_LIMIT_BYTES = 16 << 20;

const EPS = { F64: 0, F32: 2 ** -23, F16: 2 ** -10, BF16: 2 ** -7 };

function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The first tensor of a safetensors file as {dtype, values (an array of numbers)}. */
export function readSafetensors(buffer) {
  const view = new DataView(buffer);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, headerLength)));
  const name = Object.keys(header).find((key) => key !== "__metadata__");
  const { dtype, data_offsets: [begin, end] } = header[name];
  const bytes = buffer.slice(8 + headerLength + begin, 8 + headerLength + end); // a copy: aligned
  switch (dtype) {
    case "F32":
      return { dtype, values: new Float32Array(bytes) };
    case "F64":
      return { dtype, values: new Float64Array(bytes) };
    case "F16":
      return { dtype, values: Array.from(new Uint16Array(bytes), halfToFloat) };
    case "BF16": {
      const u16 = new Uint16Array(bytes);
      const u32 = new Uint32Array(u16.length);
      for (let i = 0; i < u16.length; i += 1) u32[i] = u16[i] << 16;
      return { dtype, values: new Float32Array(u32.buffer) };
    }
    default:
      throw new Error(`a ${dtype} tensor cannot be counted here`);
  }
}

/**
 * How many values lie within k spreads of the center, for k = 1, 2, 3: |x - center| <= k * spread,
 * in float64. With spread 0 (a point mass) "within" means equal up to the dtype's rounding of
 * the center.
 */
export function countWithin(values, dtype, center, spread) {
  const limits = RULE_KS.map((k) => (spread > 0 ? k * spread : (EPS[dtype] ?? 0) * Math.abs(center)));
  const counts = RULE_KS.map(() => 0);
  for (let i = 0; i < values.length; i += 1) {
    const d = Math.abs(values[i] - center);
    for (let j = 0; j < limits.length; j += 1) if (d <= limits[j]) counts[j] += 1;
  }
  return counts;
}

/** The same counts estimated from a histogram, values spread evenly within each bin. */
export function countFromHistogram(histogram, center, spread) {
  const { edges, counts } = histogram;
  return RULE_KS.map((k) => {
    const lo = center - k * spread;
    const hi = center + k * spread;
    let total = 0;
    counts.forEach((c, i) => {
      const a = edges[i];
      const b = edges[i + 1];
      if (b <= a) {
        if (a >= lo && a <= hi) total += c;
        return;
      }
      const overlap = Math.max(0, Math.min(b, hi) - Math.max(a, lo));
      total += (c * overlap) / (b - a);
    });
    return total;
  });
}

/** A share as the table shows it: two decimals, and 0 and 100 without them. */
export function fmtShare(share) {
  if (share === null || share === undefined || Number.isNaN(share)) return "\u2014";
  if (share === 1) return "100 %";
  if (share === 0) return "0 %";
  return `${(share * 100).toFixed(2)} %`;
}

/** Rows of the table: {k, low, high, observed, count, expected, approx} for k = 1, 2, 3. */
export function ruleRows(theory, numel, counts, exact) {
  return RULE_KS.map((k, i) => {
    const expected = expectedShare(theory, k);
    return {
      k,
      low: theory.center - k * theory.spread,
      high: theory.center + k * theory.spread,
      count: counts ? counts[i] : null,
      observed: counts && numel > 0 ? counts[i] / numel : null,
      exact,
      expected: expected ? expected.value : null,
      approx: Boolean(expected && expected.approx),
    };
  });
}
