// The tensor view: a recipe form on the left; on the right the histogram of the tensor the
// service made, the 68-95-99.7 rule (shares within 1, 2, 3 sigma, observed against expected), its
// stats against what the scheme should give, and the same tensor as a download, a curl command
// and Python client code. The recipe and the histogram's settings live in the page's query.

import { ApiError, debounce, fieldOf, LatestOnly, postJSON } from "./api.js";
import { describe, ruleNote, theoryFor } from "./density.js";
import { buildParams, fitShape, parseShape } from "./form.js";
import { DTYPE_BYTES, fmt, fmtBytes, fmtInt, fmtShape } from "./format.js";
import { drawHistogram, hasBands } from "./plot.js";
import { COUNT_LIMIT_BYTES, countFromHistogram, countWithin, fmtShare, readSafetensors, ruleRows } from "./rule.js";
import { curlCommand, downloadUrl, pythonCode } from "./snippets.js";
import { setQuery } from "./url.js";

const $ = (id) => document.getElementById(id);
const SEED_MAX = (1n << 64n) - 1n;
const TOP_FIELDS = ["shape", "dtype", "device", "seed", "scheme"];

export class TensorView {
  constructor(catalog, devices, announce) {
    this.catalog = catalog;
    this.schemeNames = new Set(Object.keys(catalog));
    this.announce = announce;
    this.memory = {}; // scheme -> {param: raw input}, so switching back keeps what was typed
    this.latest = new LatestOnly();
    this.last = null; // the last answer, redrawn on resize and log-scale toggles
    this.params = new Map();
    this.debounced = debounce(() => this.run(), 250);
    this.fillSelects(devices);
    this.restoreFromUrl();
    this.bind();
    this.showScheme(false);
  }

  fillSelects(devices) {
    const scheme = $("scheme");
    for (const [name, entry] of Object.entries(this.catalog)) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      option.title = entry.formula;
      scheme.append(option);
    }
    scheme.value = this.catalog.kaiming_uniform ? "kaiming_uniform" : Object.keys(this.catalog)[0];
    const device = $("device");
    const auto = document.createElement("option");
    auto.value = "auto";
    auto.textContent = devices ? `auto (${devices.default})` : "auto";
    device.append(auto);
    for (const d of devices ? devices.devices : []) {
      const option = document.createElement("option");
      option.value = d.device;
      option.textContent = d.device_name ? `${d.device} \u00b7 ${d.device_name}` : d.device;
      option.disabled = d.alive === false;
      device.append(option);
    }
  }

  /** ?scheme=normal&std=2&shape=64,64&seed=0 in the page's address pre-fills the form. */
  restoreFromUrl() {
    const query = new URLSearchParams(location.search);
    if (query.has("scheme") && this.catalog[query.get("scheme")]) $("scheme").value = query.get("scheme");
    if (query.has("shape")) $("shape").value = query.get("shape").split(",").join(", ");
    for (const id of ["dtype", "device", "seed"]) if (query.has(id)) $(id).value = query.get(id);
    if (query.has("bins")) {
      const bins = query.get("bins");
      if (/^[0-9]+$/.test(bins) && Number(bins) >= 1 && Number(bins) <= 1000) {
        if (![...$("bins").options].some((o) => o.value === bins)) $("bins").append(new Option(bins, bins));
        $("bins").value = bins;
      }
    }
    $("log-y").checked = query.get("log") === "1";
    $("y-axis").value = query.get("y") === "density" ? "density" : "count";
    const scheme = $("scheme").value;
    const remembered = {};
    for (const p of this.catalog[scheme].parameters) {
      if (p.name === "gain") {
        if (query.has("gain_nonlinearity")) {
          remembered.gain = { kind: "nonlinearity", number: String(p.default ?? 1), nonlinearity: query.get("gain_nonlinearity"), param: query.get("gain_param") ?? "" };
        } else if (query.has("gain")) {
          remembered.gain = { kind: "number", number: query.get("gain"), nonlinearity: "relu", param: "" };
        }
      } else if (query.has(p.name)) {
        remembered[p.name] = query.get(p.name);
      }
    }
    this.memory[scheme] = remembered;
  }

  bind() {
    $("scheme").addEventListener("change", () => this.showScheme(true));
    for (const id of ["shape", "seed"]) $(id).addEventListener("input", () => this.schedule(false));
    $("shape").addEventListener("input", () => { $("shape-note").textContent = ""; });
    for (const id of ["dtype", "device", "bins"]) $(id).addEventListener("change", () => this.schedule(true));
    $("seed-random").addEventListener("click", () => {
      $("seed").value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
      this.schedule(true);
    });
    $("params-reset").addEventListener("click", () => {
      this.currentScheme = null; // forget what was typed instead of remembering it
      this.memory[$("scheme").value] = {};
      this.showScheme(false);
      this.announce("Parameters reset to their defaults.");
    });
    for (const id of ["log-y", "y-axis"]) {
      $(id).addEventListener("change", () => {
        this.redraw();
        this.syncUrl(this.readRecipe().recipe);
      });
    }
    $("tensor-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.schedule(true);
    });
    $("copy-curl").addEventListener("click", () => this.copy($("curl-code").textContent, "curl command"));
    $("copy-python").addEventListener("click", () => this.copy($("python-code").textContent, "Python code"));
    let width = 0;
    new ResizeObserver(() => {
      const now = $("plot").clientWidth;
      if (Math.abs(now - width) > 4) {
        width = now;
        this.redraw();
      }
    }).observe($("plot"));
  }

  /** Show the chosen scheme's parameters; `fit`: adjust the shape to the scheme's shape rule. */
  showScheme(fit) {
    this.rememberParams();
    const name = $("scheme").value;
    const entry = this.catalog[name];
    $("scheme-formula").textContent = entry.formula;
    $("scheme-reference").textContent = entry.reference;
    $("scheme-rule").textContent = entry.shape_rule;
    this.params = buildParams($("params"), { name, ...entry }, this.memory, () => this.schedule(false));
    this.currentScheme = name;
    if (fit) {
      $("shape-note").textContent = "";
      try {
        const shape = parseShape($("shape").value);
        const fitted = fitShape(entry.shape_rule, shape);
        if (fitted !== shape) {
          $("shape").value = fitted.join(", ");
          this.announce(`Shape changed to ${fmtShape(fitted)}: ${name} needs a shape ${entry.shape_rule}.`);
          $("shape-note").textContent = `Changed to fit ${name} (${entry.shape_rule}).`;
        }
      } catch {
        // A shape that does not parse is reported when the request is built.
      }
    }
    this.schedule(true);
  }

  rememberParams() {
    if (!this.currentScheme) return;
    const raw = {};
    for (const [name, field] of this.params) raw[name] = field.raw();
    this.memory[this.currentScheme] = raw;
  }

  setState(state) {
    document.body.dataset.tensorState = state;
    $("tensor-results").setAttribute("aria-busy", state === "loading" ? "true" : "false");
  }

  /** Any change makes the answer in flight stale: abort it now, then run after the debounce. */
  schedule(immediate) {
    this.latest.abort();
    this.setState("pending");
    if (immediate) {
      this.debounced.cancel();
      queueMicrotask(() => this.run());
    } else {
      this.debounced();
    }
  }

  clearErrors() {
    for (const error of document.querySelectorAll("#tensor-form .error")) error.textContent = "";
    for (const input of document.querySelectorAll("#tensor-form [aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  /** Put each problem next to the field its loc names; the rest go to the form's own line. */
  showProblems(problems) {
    const general = [];
    for (const problem of problems) {
      const field = problem.field ?? fieldOf(problem.loc || [], this.schemeNames);
      const param = this.params.get(field);
      const target = param ? param.error : TOP_FIELDS.includes(field) ? $(`${field}-error`) : null;
      if (target) {
        target.textContent = target.textContent ? `${target.textContent} ${problem.msg}` : problem.msg;
        const wrap = target.closest(".field");
        for (const input of wrap ? wrap.querySelectorAll("input, select") : []) input.setAttribute("aria-invalid", "true");
      } else {
        general.push(field && field !== "null" ? `${field}: ${problem.msg}` : problem.msg);
      }
    }
    $("form-error").textContent = general.join(" ");
  }

  /** The recipe in the form, or the problems that keep it from being sent. */
  readRecipe() {
    const problems = [];
    let shape = [];
    try {
      shape = parseShape($("shape").value);
    } catch (error) {
      problems.push({ field: "shape", msg: error.message });
    }
    const init = { scheme: $("scheme").value };
    for (const [name, field] of this.params) {
      const read = field.read();
      if (read.problem) problems.push({ field: name, msg: read.problem });
      else if (!read.omit && !field.isDefault(read.value)) init[name] = read.value;
    }
    const seed = $("seed").value.trim();
    if (seed !== "" && (!/^[0-9]+$/.test(seed) || BigInt(seed) > SEED_MAX)) {
      problems.push({ field: "seed", msg: `seed is an integer from 0 to 2^64 \u2212 1 (${SEED_MAX}); got ${seed}` });
    }
    const recipe = { shape, init, dtype: $("dtype").value, device: $("device").value };
    if (seed !== "") recipe.seed = seed;
    this.describeShape(shape, recipe.dtype, problems.some((p) => p.field === "shape"));
    return { recipe, problems };
  }

  describeShape(shape, dtype, bad) {
    if (bad) {
      $("shape-hint").textContent = "Comma-separated sizes, [out, in, *kernel] for weights.";
      return;
    }
    const numel = shape.reduce((a, b) => a * b, 1);
    const dims = shape.length === 0 ? "0-d (one element)" : `${shape.length}-D`;
    $("shape-hint").textContent = `${dims} \u00b7 ${fmtInt(numel)} elements \u00b7 ${fmtBytes(numel * DTYPE_BYTES[dtype])} as ${dtype}`;
  }

  async run() {
    this.clearErrors();
    const { recipe, problems } = this.readRecipe();
    this.syncUrl(recipe);
    if (problems.length) {
      this.latest.next(); // a stale answer must not overwrite these errors
      this.showProblems(problems);
      this.showStale(true);
      $("busy").hidden = true;
      this.setState("error");
      return;
    }
    const signal = this.latest.next();
    this.setState("loading");
    const numel = recipe.shape.reduce((a, b) => a * b, 1);
    const spinner = setTimeout(() => {
      $("busy-note").textContent = `making ${new Intl.NumberFormat("en-US", { notation: "compact" }).format(numel)} elements\u2026`;
      $("busy").hidden = false;
    }, 120);
    try {
      const answer = await postJSON("/v1/tensor", { ...recipe, histogram_bins: Number($("bins").value) }, signal);
      const shown = this.render(recipe, answer);
      this.showStale(false);
      await this.countRule(shown, signal);
      this.setState("ready");
    } catch (error) {
      if (error.name === "AbortError") return;
      const problems = error instanceof ApiError ? error.problems : [{ loc: [], msg: String(error) }];
      if (error instanceof ApiError && error.status === 413) problems.forEach((p) => { p.field = "shape"; });
      this.showProblems(problems);
      this.showStale(true);
      this.announce(`Error: ${problems.map((p) => p.msg).join(" ")}`);
      this.setState("error");
    } finally {
      clearTimeout(spinner);
      if (!signal.aborted) $("busy").hidden = true;
      this.latest.done(signal);
    }
  }

  /** After an error the results stay, dimmed, labelled as the last recipe that worked. */
  showStale(stale) {
    const shown = stale && this.last !== null;
    $("tensor-results").classList.toggle("stale", shown);
    $("stale-note").hidden = !shown;
  }

  /** The recipe and the histogram's settings (bins, log scale, y axis) into the query. */
  syncUrl(recipe) {
    const url = new URL(downloadUrl(location.origin, recipe));
    const query = url.searchParams;
    if (recipe.device === "auto") query.delete("device");
    if (recipe.dtype === "float32") query.delete("dtype");
    if ($("bins").value !== "60") query.set("bins", $("bins").value);
    if ($("log-y").checked) query.set("log", "1");
    if ($("y-axis").value === "density") query.set("y", "density");
    setQuery(query);
  }

  render(recipe, { data, headers }) {
    const [name, summary] = Object.entries(data.tensors)[0];
    const stats = summary.stats;
    const scheme = recipe.init.scheme;
    const seed = headers.get("x-init-seed") ?? String(data.request.seed);
    const used = { ...recipe, device: data.request.device, seed };
    const theory = theoryFor(scheme, data.request.init, stats);
    this.last = { stats, theory, summary };

    $("plot-title").textContent = `${name} \u00b7 ${summary.dtype} ${fmtShape(summary.shape)} \u00b7 ${scheme}`;
    this.redraw();
    this.renderLegend(theory, stats);
    this.renderStats(stats);
    this.renderFacts(stats, summary, used, data.provenance);
    this.renderWarnings(data.provenance);

    const link = $("download");
    link.href = downloadUrl(location.origin, used);
    link.setAttribute("download", `${name}.safetensors`);
    link.removeAttribute("aria-disabled");
    $("download-size").textContent = fmtBytes(stats.numel * DTYPE_BYTES[summary.dtype]);
    $("curl-code").textContent = curlCommand(location.origin, used, name);
    $("python-code").textContent = pythonCode(location.origin, used);
    const expected = stats.expected ? ` (expected ${fmt(stats.expected.std, 4)})` : "";
    this.announce(`Updated ${scheme}: mean ${fmt(stats.mean, 4)}, std ${fmt(stats.std, 4)}${expected}.`);
    return { stats, theory, dtype: summary.dtype, url: link.href };
  }

  /**
   * The 68-95-99.7 table: counted exactly from the tensor's own bytes (the same recipe and seed
   * as a safetensors file) up to COUNT_LIMIT elements, else estimated from the histogram.
   */
  async countRule({ stats, theory, url, dtype }, signal) {
    let counts = null;
    let exact = false;
    let how = "";
    const bytes = stats.numel * (DTYPE_BYTES[dtype] ?? 4);
    $("rule-panel").setAttribute("aria-busy", "true");
    if (stats.numel > 0 && bytes <= COUNT_LIMIT_BYTES) {
      try {
        const response = await fetch(url, { headers: { Accept: "application/octet-stream" }, signal });
        if (!response.ok) throw new Error(`the server answered ${response.status}`);
        const { dtype, values } = readSafetensors(await response.arrayBuffer());
        counts = countWithin(values, dtype, theory.center, theory.spread);
        exact = true;
        how = `Observed: counted over all ${fmtInt(stats.numel)} values (|x \u2212 mean| \u2264 k\u03c3).`;
      } catch (error) {
        if (error.name === "AbortError" || signal.aborted) return;
        how = `Could not fetch the values to count them (${error.message}); observed shares are estimated from the histogram.`;
      }
    } else if (bytes > COUNT_LIMIT_BYTES) {
      how = `Observed shares are estimated from the histogram (values spread evenly within each bin): the page fetches the values to count them only up to ${fmtBytes(COUNT_LIMIT_BYTES)}, and this tensor is ${fmtBytes(bytes)}.`;
    }
    if (signal.aborted) return;
    if (!counts && stats.histogram && stats.numel > 0) counts = countFromHistogram(stats.histogram, theory.center, theory.spread);
    this.renderRule(ruleRows(theory, stats.numel, counts, exact), theory, how);
  }

  renderRule(rows, theory, how) {
    const around = theory.sample
      ? `the sample mean ${fmt(theory.center, 4)}, \u03c3 = the sample std ${fmt(theory.spread, 4)}`
      : `the mean ${fmt(theory.center, 4)}, \u03c3 = ${fmt(theory.spread, 4)} (the std of the distribution drawn)`;
    $("rule-lead").textContent = `Share of the values within \u00b1k\u03c3 of ${around}.`;
    $("rule-body").replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.k = String(row.k);
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = `\u00b1${row.k}\u03c3`;
      const cell = (id, text, title) => {
        const td = document.createElement("td");
        td.id = `rule-${row.k}-${id}`;
        td.textContent = text;
        if (title) td.title = title;
        return td;
      };
      const diff = row.observed !== null && row.expected !== null ? (row.observed - row.expected) * 100 : null;
      const approx = row.exact || row.observed === null ? "" : "\u2248 ";
      const count = row.count === null ? "\u2014" : row.exact ? fmtInt(row.count) : `\u2248 ${fmtInt(Math.round(row.count))}`;
      tr.append(
        th,
        cell("interval", `[${fmt(row.low, 4)}, ${fmt(row.high, 4)}]`),
        cell("count", count),
        cell("observed", `${approx}${fmtShare(row.observed)}`),
        cell("expected", row.expected === null ? "\u2014" : `${row.approx ? "\u2248 " : ""}${fmtShare(row.expected)}`),
        cell("diff", diff === null ? "\u2014" : `${diff > 0 ? "+" : ""}${diff.toFixed(2).replace("-", "\u2212")} pp`, "observed \u2212 expected, in percentage points"),
      );
      return tr;
    }));
    $("rule-note").textContent = [ruleNote(theory), how].filter(Boolean).join(" ");
    $("rule-panel").setAttribute("aria-busy", "false");
  }

  redraw() {
    if (!this.last) return;
    const { stats, theory } = this.last;
    const plot = $("plot");
    const histogram = stats.histogram;
    if (!histogram || stats.numel === 0 || histogram.counts.length === 0) {
      const empty = document.createElement("p");
      empty.className = "plot-empty";
      empty.textContent = stats.numel === 0 ? "Empty tensor: a dimension of the shape is 0, so there is nothing to plot." : "No histogram in the answer.";
      plot.replaceChildren(empty);
      plot.setAttribute("aria-label", empty.textContent);
      return;
    }
    const text = drawHistogram(plot, { ...histogram, numel: stats.numel, theory, logY: $("log-y").checked, density: $("y-axis").value === "density" });
    plot.setAttribute("aria-label", `${text} Expected: ${describe(theory, fmt)}.`);
  }

  renderLegend(theory, stats) {
    const items = [["swatch-bar", `actual: ${fmtInt(stats.numel)} values in ${stats.histogram ? stats.histogram.counts.length : 0} bins`]];
    const curve = ["normal", "truncated", "uniform", "sparse", "orthogonal"].includes(theory.kind);
    if (curve) items.push(["swatch-line", `expected: ${describe(theory, fmt)}`]);
    else if (theory.kind === "point") items.push(["swatch-point", `expected: ${describe(theory, fmt)}`]);
    else items.push(["swatch-none", describe(theory, fmt)]);
    if (hasBands(theory)) {
      const whose = theory.kind === "truncated" ? ", the truncated distribution's own std" : theory.kind === "sparse" ? ", zeros included" : "";
      items.push(["swatch-band", `\u00b11\u03c3, \u00b12\u03c3, \u00b13\u03c3 around ${fmt(theory.center, 4)} (\u03c3 = ${fmt(theory.spread, 4)}${whose})`]);
    }
    if (theory.kind === "truncated") items.push(["swatch-cutoff", "cut-offs"]);
    if (theory.kind === "uniform") items.push(["swatch-bound", "bounds"]);
    if (theory.kind === "sparse" && theory.zeros > 0) items.push(["swatch-point", "the zeros (a point mass at 0)"]);
    $("legend").replaceChildren(...items.map(([cls, text]) => {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = `swatch ${cls}`;
      sw.setAttribute("aria-hidden", "true");
      li.append(sw, document.createTextNode(text));
      return li;
    }));
  }

  renderStats(stats) {
    const e = stats.expected || {};
    const rows = [
      ["mean", "mean", stats.mean, e.mean],
      ["std", "std", stats.std, e.std],
      ["min", "min", stats.min, e.low],
      ["max", "max", stats.max, e.high],
      ["zero_fraction", "zero fraction", stats.zero_fraction, null],
      ["numel", "elements", stats.numel, null],
    ];
    $("stats-body").replaceChildren(...rows.map(([key, label, actual, expected]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      const cells = [actual, expected, typeof actual === "number" && typeof expected === "number" ? actual - expected : null];
      tr.append(th, ...cells.map((value, i) => {
        const td = document.createElement("td");
        td.id = `stat-${key}-${["actual", "expected", "diff"][i]}`;
        td.textContent = key === "numel" && i === 0 ? fmtInt(value) : value === null || value === undefined ? "\u2014" : (i === 2 && value > 0 ? "+" : "") + fmt(value, i === 2 ? 3 : 6);
        return td;
      }));
      return tr;
    }));
    $("stats-note").textContent = stats.expected
      ? "Expected min and max are the distribution's bounds (none for a normal); std is unbiased, as torch.std."
      : "This scheme draws nothing, so there is no expected distribution.";
  }

  renderFacts(stats, summary, used, provenance) {
    const facts = [
      ["fan_in", stats.fan_in, "fan_in: inputs per output, in_features \u00d7 receptive field"],
      ["fan_out", stats.fan_out, "fan_out: outputs per input, out_features \u00d7 receptive field"],
      ["gain", stats.gain, "the gain the scheme used"],
      ["bound", stats.bound, "half-width of the uniform distribution"],
      ["std_used", stats.std_used, "the std handed to the sampler, before any truncation"],
      ["seed", used.seed, "the seed this tensor was drawn with"],
      ["device", `${used.device}${provenance.device_name ? ` (${provenance.device_name})` : ""}`, "where the tensor was made"],
      ["dtype", summary.dtype, "element type"],
    ];
    $("facts").replaceChildren(...facts.flatMap(([name, value, title]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      dt.title = title;
      const dd = document.createElement("dd");
      dd.id = `fact-${name}`;
      dd.textContent = typeof value === "number" ? (Number.isInteger(value) ? fmtInt(value) : fmt(value)) : value ?? "\u2014";
      if (value === null || value === undefined) dd.classList.add("muted");
      return [dt, dd];
    }));
    const parts = [`torch ${provenance.torch}`, provenance.cpu_capability ? `CPU ${provenance.cpu_capability}` : null,
      provenance.sm_count ? `${provenance.sm_count} SMs` : null, `rng ${provenance.rng}`, `initsvc ${provenance.service_version}`];
    if (provenance.mkl_cbwr) parts.push(`MKL_CBWR=${provenance.mkl_cbwr}, ${provenance.qr_threads} QR thread(s)`);
    $("provenance").textContent = parts.filter(Boolean).join(" \u00b7 ");
  }

  renderWarnings(provenance) {
    const notes = [...(provenance.warnings || [])];
    const fallback = provenance.dtype_fallback;
    if (fallback) notes.push(`Computed in ${fallback.computed_in} and cast to ${fallback.cast_to}: torch cannot run this scheme in ${fallback.cast_to}.`);
    const box = $("warnings");
    box.hidden = notes.length === 0;
    box.replaceChildren(...notes.map((text) => {
      const p = document.createElement("p");
      p.textContent = text;
      return p;
    }));
  }

  async copy(text, what) {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    $("copy-status").textContent = `Copied the ${what}.`;
    setTimeout(() => { $("copy-status").textContent = ""; }, 2500);
  }
}
