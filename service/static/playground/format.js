// Number and size formatting shared by the views. No DOM here.

const MINUS = "\u2212";

/** A number for people: 6 significant digits, exponent form when very small or large. */
export function fmt(x, digits = 6) {
  if (x === null || x === undefined) return "\u2014";
  if (typeof x !== "number") return String(x);
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  const abs = Math.abs(x);
  let text;
  if (abs >= 1e-4 && abs < 1e7) {
    text = Number(x.toPrecision(digits)).toString();
  } else {
    const [mantissa, exponent] = x.toExponential(digits - 1).split("e");
    text = `${Number(mantissa)}e${Number(exponent)}`;
  }
  return text.replace("-", MINUS);
}

/** Short tick labels: as few digits as the step between ticks needs. */
export function fmtTick(x, step) {
  if (x === 0) return "0";
  const abs = Math.abs(x);
  if (abs >= 1e5 || abs < 1e-3) {
    const [m, e] = x.toExponential(2).split("e");
    return `${Number(m)}e${Number(e)}`.replace("-", MINUS);
  }
  // Enough decimals for the step itself: 0.25 apart needs two, not one (0.3 beside 0.5 misleads).
  let decimals = Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
  while (decimals < 8 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals += 1;
  return x.toFixed(decimals).replace("-", MINUS);
}

export function fmtInt(n) {
  return n === null || n === undefined ? "\u2014" : Number(n).toLocaleString("en-US");
}

export function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

export const DTYPE_BYTES = { float16: 2, bfloat16: 2, float32: 4, float64: 8 };

export function fmtShape(shape) {
  return `[${shape.join(", ")}]`;
}
