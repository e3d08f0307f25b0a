// The histogram of a tensor's values as inline SVG, with what the scheme should give drawn over
// it: the density (scaled to counts per bin), the +-1/2/3 sigma bands, truncation cut-offs,
// uniform bounds or a point mass. Plus the small sparklines of the module view.

import { expectedCounts } from "./density.js";
import { fmt, fmtTick } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const MINUS_SIGN = "\u2212";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return { ticks: [lo], step: 1 };
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return { ticks, step };
}

const BANDED = new Set(["normal", "truncated", "sparse", "orthogonal", "uniform"]);

/** Whether the picture has +-1/2/3 sigma bands: around the drawn distribution's own mean and std. */
export function hasBands(theory) {
  return BANDED.has(theory.kind) && theory.spread > 0;
}

function xDomain(edges, theory) {
  let lo = edges[0];
  let hi = edges[edges.length - 1];
  if (theory.kind === "normal" || theory.kind === "sparse" || theory.kind === "orthogonal") {
    if (theory.sigma > 0) {
      lo = Math.min(lo, theory.mu - 3.5 * theory.sigma);
      hi = Math.max(hi, theory.mu + 3.5 * theory.sigma);
    }
  }
  if ((theory.kind === "truncated" || theory.kind === "uniform") && theory.high > theory.low) {
    lo = Math.min(lo, theory.low);
    hi = Math.max(hi, theory.high);
  }
  if (hasBands(theory)) { // every band edge in view, so each of its labels is drawn
    lo = Math.min(lo, theory.center - 3.25 * theory.spread);
    hi = Math.max(hi, theory.center + 3.25 * theory.spread);
  }
  const pad = (hi - lo) * 0.04 || 0.5;
  return [lo - pad, hi + pad];
}

/**
 * Draw into `container` (emptied first). `data`: {edges, counts, numel, theory, logY, density}:
 * `density` puts probability density (count / (elements x bin width)) on the y axis instead of
 * the count per bin. Returns a short text description of the picture for screen readers.
 */
export function drawHistogram(container, data) {
  const { edges, counts, numel, theory, logY } = data;
  const width = Math.max(280, Math.round(container.clientWidth || 640));
  const narrow = width < 480;
  const height = narrow ? 250 : 320;
  const m = { top: 30, right: 16, bottom: 46, left: narrow ? 50 : 62 };
  const innerW = width - m.left - m.right;
  const innerH = height - m.top - m.bottom;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "histogram", "aria-hidden": "true" });
  svg.dataset.yAxis = data.density ? "density" : "count";

  const [x0, x1] = xDomain(edges, theory);
  const x = (v) => m.left + ((v - x0) / (x1 - x0)) * innerW;
  const binWidth = edges.length > 1 ? edges[1] - edges[0] : 1;
  const expected = expectedCounts(theory, numel, binWidth);
  // Heights are kept in counts per bin; `unit` turns a count into what the y axis shows.
  const unit = data.density && numel > 0 && binWidth > 0 ? 1 / (numel * binWidth) : 1;

  // Heights: the tallest bar or the density's peak, whichever is higher.
  let peak = Math.max(1, ...counts);
  const curve = [];
  if (expected) {
    const steps = Math.min(600, innerW);
    for (let i = 0; i <= steps; i += 1) {
      const v = x0 + ((x1 - x0) * i) / steps;
      curve.push([v, expected(v)]);
    }
    if (theory.kind === "truncated" || theory.kind === "uniform") {
      curve.push([theory.low, expected(theory.low)], [theory.high, expected(theory.high)]);
      curve.sort((a, b) => a[0] - b[0]);
    }
    peak = Math.max(peak, ...curve.map((p) => p[1]));
  }
  const floor = 0.5; // the log scale's bottom, in counts: half an element
  const yTop = logY ? Math.log10(peak * 2) : peak * 1.08;
  const yValue = (c) => (logY ? Math.log10(Math.max(c, floor)) - Math.log10(floor) : c);
  const yMax = logY ? yTop - Math.log10(floor) : yTop;
  const y = (c) => m.top + innerH - (yValue(c) / yMax) * innerH;

  const clipId = `clip-${Math.random().toString(36).slice(2, 9)}`;
  const defs = el("defs");
  const clip = el("clipPath", { id: clipId });
  clip.append(el("rect", { x: m.left, y: m.top - 2, width: innerW, height: innerH + 2 }));
  defs.append(clip);
  svg.append(defs);
  const plotArea = el("g", { "clip-path": `url(#${clipId})` });

  // Sigma bands around the drawn distribution's mean, in its own std, behind everything else.
  // Each k has its own row of labels, written just outside the band's edges, so none overlap.
  const bandLabels = el("g", { class: "band-labels" });
  if (hasBands(theory)) {
    for (const k of [3, 2, 1]) {
      const lowEdge = theory.center - k * theory.spread;
      const highEdge = theory.center + k * theory.spread;
      const left = x(lowEdge);
      const right = x(highEdge);
      const band = el("rect", { class: `band band-${k}`, x: left, y: m.top, width: Math.max(0, right - left), height: innerH });
      band.dataset.low = String(lowEdge);
      band.dataset.high = String(highEdge);
      plotArea.append(band);
      const row = m.top + 12 + (k - 1) * 12;
      const labelWidth = 22;
      for (const [pos, side, sign] of [[left, -1, MINUS_SIGN], [right, 1, "+"]]) {
        // Outside the edge where it fits, else just inside it.
        let out = side;
        if (pos + side * (3 + labelWidth) < m.left || pos + side * (3 + labelWidth) > m.left + innerW) out = -side;
        const label = el("text", { class: `band-label band-label-${k}`, x: pos + out * 3, y: row, "text-anchor": out < 0 ? "end" : "start" }, `${sign}${k}\u03c3`);
        bandLabels.append(label);
      }
    }
  }

  // Axes grid and ticks.
  const gridY = el("g", { class: "grid" });
  const axisY = el("g", { class: "axis axis-y" });
  const yLabel = (value, compact) => new Intl.NumberFormat("en-US", compact ? { notation: "compact", maximumFractionDigits: 2 } : { maximumSignificantDigits: 6 }).format(value);
  if (logY) {
    // Powers of ten of what the axis shows, from the floor to the top.
    const lowest = Math.ceil(Math.log10(floor * unit) - 1e-9);
    const highest = Math.floor(Math.log10(peak * 2 * unit) + 1e-9);
    for (let p = Math.max(lowest, highest - 12); p <= highest; p += 1) {
      const c = 10 ** p / unit;
      gridY.append(el("line", { x1: m.left, x2: m.left + innerW, y1: y(c), y2: y(c) }));
      const text = unit === 1 ? yLabel(10 ** p, true) : Math.abs(p) >= 4 ? `1e${p}`.replace("-", MINUS_SIGN) : yLabel(10 ** p, false);
      axisY.append(el("text", { x: m.left - 8, y: y(c) + 4, "text-anchor": "end" }, text));
    }
  } else {
    const { ticks, step } = niceTicks(0, yTop * unit, narrow ? 4 : 5);
    // One style per axis: 50,000 beside 100,000 reads well; 50K beside 1.5M too; not mixed.
    const compact = unit === 1 && ticks[ticks.length - 1] >= (narrow ? 1e3 : 1e5);
    for (const t of ticks) {
      gridY.append(el("line", { x1: m.left, x2: m.left + innerW, y1: y(t / unit), y2: y(t / unit) }));
      const text = unit === 1 ? yLabel(t, compact) : fmtTick(t, step);
      axisY.append(el("text", { x: m.left - 8, y: y(t / unit) + 4, "text-anchor": "end" }, text));
    }
  }
  svg.append(gridY);
  svg.append(plotArea);

  // Bars.
  // Bars. A few occupied bins (eye, dirac, constants) get their counts written above them, and
  // every occupied bin stays visible: dirac's 256 ones beside 600K zeros are the point.
  const bars = el("g", { class: "bars" });
  const occupied = counts.filter((c) => c > 0).length;
  const baseline = m.top + innerH;
  counts.forEach((c, i) => {
    if (c <= 0) return;
    const left = x(edges[i]);
    const right = x(edges[i + 1]);
    const top = Math.min(y(c), baseline - 2);
    const bar = el("rect", { class: "bar", x: left + 0.25, y: top, width: Math.max(0.8, right - left - 0.5), height: baseline - top });
    bar.append(el("title", {}, `[${fmt(edges[i], 4)}, ${fmt(edges[i + 1], 4)}): ${c.toLocaleString("en-US")}`));
    bars.append(bar);
    if (occupied <= 4) {
      bars.append(el("text", { class: "bar-label", x: (left + right) / 2, y: Math.max(m.top + 10, top - 5), "text-anchor": "middle" }, c.toLocaleString("en-US")));
    }
  });
  plotArea.append(bars);

  // Cut-offs and bounds.
  const marks = el("g", { class: "marks" });
  const markLine = (v, label, cls, preferred) => {
    if (!(v >= x0 && v <= x1)) return;
    // Labels sit beside their line, on the side where they fit inside the picture.
    const textWidth = label.length * 6.3;
    let anchor = preferred;
    if (anchor === "start" && x(v) + 4 + textWidth > width - 2) anchor = "end";
    if (anchor === "end" && x(v) - 4 - textWidth < 2) anchor = "start";
    marks.append(el("line", { class: `mark ${cls}`, x1: x(v), x2: x(v), y1: m.top - 4, y2: m.top + innerH }));
    marks.append(el("text", { class: `mark-label ${cls}`, x: x(v) + (anchor === "end" ? -4 : 4), y: m.top - 8, "text-anchor": anchor }, label));
  };
  if (theory.kind === "truncated") {
    markLine(theory.low, `cut-off ${fmt(theory.low, 4)}`, "cutoff", "end");
    markLine(theory.high, `cut-off ${fmt(theory.high, 4)}`, "cutoff", "start");
  } else if (theory.kind === "uniform") {
    markLine(theory.low, `low ${fmt(theory.low, 4)}`, "bound", "end");
    markLine(theory.high, `high ${fmt(theory.high, 4)}`, "bound", "start");
  } else if (theory.kind === "point") {
    markLine(theory.value, `every element = ${fmt(theory.value, 4)}`, "point", "start");
  } else if (theory.kind === "sparse" && theory.zeros > 0) {
    markLine(0, `zeros ${fmt(theory.zeros * 100, 3)}%`, "point", "start");
  }

  // Density curve.
  if (expected) {
    const d = curve.map(([v, c], i) => `${i ? "L" : "M"}${x(v).toFixed(2)},${y(Math.max(c, logY ? 0.5 : 0)).toFixed(2)}`).join("");
    plotArea.append(el("path", { class: "density", d }));
  }
  svg.append(marks);
  svg.append(bandLabels);

  // X axis.
  const axisX = el("g", { class: "axis axis-x" });
  axisX.append(el("line", { class: "axis-line", x1: m.left, x2: m.left + innerW, y1: m.top + innerH, y2: m.top + innerH }));
  const { ticks: xt, step } = niceTicks(x0, x1, narrow ? 4 : 7);
  for (const t of xt) {
    axisX.append(el("line", { class: "tick", x1: x(t), x2: x(t), y1: m.top + innerH, y2: m.top + innerH + 5 }));
    axisX.append(el("text", { x: x(t), y: m.top + innerH + 19, "text-anchor": "middle" }, fmtTick(t, step)));
  }
  axisX.append(el("text", { class: "axis-title", x: m.left + innerW / 2, y: height - 6, "text-anchor": "middle" }, "value"));
  svg.append(axisX);
  axisY.append(el("text", { class: "axis-title y-title", transform: `translate(13 ${m.top + innerH / 2}) rotate(-90)`, "text-anchor": "middle" }, `${data.density ? "density" : "count per bin"}${logY ? " (log)" : ""}`));
  svg.append(axisY);

  container.replaceChildren(svg);
  return `Histogram of ${numel.toLocaleString("en-US")} values in ${counts.length} bins from ${fmt(edges[0])} to ${fmt(edges[edges.length - 1])}.`;
}


/** A small bar chart of histogram counts (module view); a dash when there is none. */
export function sparkline(histogram, label) {
  const width = 120;
  const height = 28;
  if (!histogram || !histogram.counts || histogram.counts.length === 0) {
    const span = document.createElement("span");
    span.className = "muted";
    span.textContent = "\u2014";
    return span;
  }
  const counts = histogram.counts;
  const peak = Math.max(1, ...counts);
  const w = width / counts.length;
  const svg = el("svg", { class: "sparkline", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  counts.forEach((c, i) => {
    if (c <= 0) return;
    const h = Math.max(1, (c / peak) * (height - 2));
    svg.append(el("rect", { x: i * w, y: height - h, width: Math.max(0.6, w - 0.4), height: h }));
  });
  svg.append(el("line", { x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5, class: "baseline" }));
  return svg;
}
