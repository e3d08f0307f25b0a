// The module view: a layer list (JSON, or built with the "add layer" helper from /v1/layers)
// sent to POST /v1/module in JSON mode; every state_dict entry with its shape, dtype, init and a
// sparkline of its values. While the server has no /v1/module (404) the view says so and waits.

import { ApiError, debounce, getJSON, LatestOnly, postJSON } from "./api.js";
import { DTYPE_BYTES, fmt, fmtBytes, fmtInt, fmtShape } from "./format.js";
import { sparkline } from "./plot.js";

const $ = (id) => document.getElementById(id);
const SEED_MAX = (1n << 64n) - 1n;
const EXAMPLE = [
  { type: "Linear", in_features: 784, out_features: 256 },
  { type: "LayerNorm", normalized_shape: 256 },
  { type: "ReLU" },
  { type: "Linear", in_features: 256, out_features: 10 },
];
const ELEMENT_BYTES = { ...DTYPE_BYTES, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };
const SPARK_BINS = 24;

/** JSON on one line with a space after each comma and colon. */
function oneLine(value) {
  if (Array.isArray(value)) return `[${value.map(oneLine).join(", ")}]`;
  if (value && typeof value === "object") return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${oneLine(v)}`).join(", ")}}`;
  return JSON.stringify(value);
}

/** Layers as one object per line: easier to read and edit than JSON.stringify's indenting. */
export function formatLayers(value) {
  if (Array.isArray(value)) return value.length ? `[\n  ${value.map(oneLine).join(",\n  ")}\n]` : "[]";
  if (value && typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) => `  ${JSON.stringify(k)}: ${k === "layers" ? formatLayers(v).replace(/\n/g, "\n  ") : oneLine(v)}`);
    return entries.length ? `{\n${entries.join(",\n")}\n}` : "{}";
  }
  return JSON.stringify(value);
}

function argList(spec) {
  if (!spec) return [];
  if (Array.isArray(spec)) {
    return spec.map((a) => (typeof a === "string" ? { name: a } : { ...a, name: a.name ?? a.argument ?? a.key }));
  }
  if (spec.properties) {
    const required = new Set(spec.required || []);
    return Object.entries(spec.properties).map(([name, p]) => ({ ...p, name, required: required.has(name) }));
  }
  return Object.entries(spec).map(([name, p]) => (p && typeof p === "object" ? { ...p, name } : { name, type: p }));
}

/** /v1/layers in whichever of the plausible shapes it comes: [{type, arguments}] or {Type: {...}}. */
export function normalizeLayers(data) {
  const entries = data && (data.layers ?? data);
  const pick = (v) => v && (v.arguments ?? v.parameters ?? v.args ?? v.kwargs ?? (v.properties ? v : null));
  const list = Array.isArray(entries)
    ? entries.map((item) => ({ type: item.type ?? item.name, args: argList(pick(item)), description: item.description }))
    : Object.entries(entries || {}).map(([type, v]) => ({ type, args: argList(pick(v) ?? v), description: v && v.description }));
  return list
    .filter((layer) => typeof layer.type === "string")
    .map((layer) => ({ ...layer, args: layer.args.filter((a) => a.name && !["type", "device", "dtype"].includes(a.name)) }));
}

/** What the values were drawn from, from the stats (the module's layers init themselves). */
function initOf(summary) {
  if (summary.init) return typeof summary.init === "string" ? summary.init : JSON.stringify(summary.init);
  const s = summary.stats;
  if (!s) return "\u2014";
  const e = s.expected;
  if (!e) return "fixed values";
  if (s.bound !== null && s.bound !== undefined) return `U(\u00b1${fmt(s.bound, 4)})`;
  if (e.std === 0) return `constant ${fmt(e.mean, 4)}`;
  const width = e.high - e.low;
  if (width > 0 && s.std_used === null && Math.abs(e.std * Math.sqrt(12) - width) <= 1e-9 * width) {
    // A uniform's std is its width / sqrt(12).
    return Math.abs(e.low + e.high) <= 1e-12 * width ? `U(\u00b1${fmt(e.high, 4)})` : `U(${fmt(e.low, 4)}, ${fmt(e.high, 4)})`;
  }
  if (s.std_used !== null && s.std_used !== undefined) {
    const cut = e.low !== null && e.low !== undefined ? ` in [${fmt(e.low, 3)}, ${fmt(e.high, 3)}]` : "";
    return `N(${fmt(e.mean, 3)}, ${fmt(s.std_used, 4)}\u00b2)${cut}`;
  }
  return `mean ${fmt(e.mean, 3)}, std ${fmt(e.std, 3)}`;
}

function parseArg(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text; // a bare word such as zeros (padding_mode) is a string
  }
}

export class ModuleView {
  constructor(devices, announce, onState = () => {}) {
    this.announce = announce;
    this.onState = onState; // called with the view's URL state whenever it changes
    this.latest = new LatestOnly();
    this.started = false;
    this.sendBins = true;
    this.layers = [];
    this.debounced = debounce(() => this.run(), 500);
    const device = $("module-device");
    device.append(new Option(devices ? `auto (${devices.default})` : "auto", "auto"));
    for (const d of devices ? devices.devices : []) device.append(new Option(d.device, d.device));
    $("layers-json").value = formatLayers(EXAMPLE);
    this.setState("idle");
  }

  /** The view's state for the address: the layer list as typed (compact when it parses), seed, dtype, device. */
  urlState() {
    const params = new URLSearchParams();
    let layers = $("layers-json").value;
    try {
      layers = JSON.stringify(JSON.parse(layers));
    } catch {
      // kept as typed, so a shared link shows the same (broken) text and its error
    }
    if (layers !== JSON.stringify(EXAMPLE)) params.set("layers", layers);
    for (const [key, id, initial] of [["seed", "module-seed", "0"], ["dtype", "module-dtype", "float32"], ["device", "module-device", "auto"]]) {
      if ($(id).value !== initial) params.set(key, $(id).value);
    }
    return params;
  }

  /**
   * Called when the view is first shown, with the hash's state (or null): fetch the layer list,
   * then initialize the layers from the address or the example.
   */
  async start(params) {
    if (this.started) return;
    this.started = true;
    if (params && params.has("layers")) {
      const text = params.get("layers");
      try {
        $("layers-json").value = formatLayers(JSON.parse(text));
      } catch {
        $("layers-json").value = text;
      }
    }
    if (params) {
      for (const [key, id] of [["seed", "module-seed"], ["dtype", "module-dtype"], ["device", "module-device"]]) {
        if (params.has(key) && (id === "module-seed" || [...$(id).options].some((o) => o.value === params.get(key)))) $(id).value = params.get(key);
      }
    }
    for (const id of ["layers-json", "module-seed"]) $(id).addEventListener("input", () => this.schedule(false));
    for (const id of ["module-dtype", "module-device"]) $(id).addEventListener("change", () => this.schedule(true));
    $("layers-json").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.schedule(true);
      }
    });
    $("module-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.schedule(true);
    });
    $("layer-type").addEventListener("change", () => this.showLayerArgs());
    $("layer-add").addEventListener("click", () => this.addLayer());
    this.schedule(true);
    try {
      const { data } = await getJSON("/v1/layers");
      this.layers = normalizeLayers(data);
    } catch (error) {
      this.layers = [];
      $("helper-note").textContent = error instanceof ApiError && error.status === 404
        ? "This server does not list its layer types (GET /v1/layers answered 404); type layers into the JSON instead."
        : `Could not load the layer types: ${error.message}`;
    }
    const select = $("layer-type");
    for (const layer of this.layers) select.append(new Option(layer.type, layer.type));
    $("layer-helper").hidden = this.layers.length === 0;
    $("helper-note").hidden = this.layers.length !== 0;
    this.showLayerArgs();
  }

  setState(state) {
    document.body.dataset.moduleState = state;
    $("module-results").setAttribute("aria-busy", state === "loading" ? "true" : "false");
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

  showLayerArgs() {
    const layer = this.layers.find((l) => l.type === $("layer-type").value);
    const box = $("layer-args");
    box.replaceChildren();
    $("layer-description").textContent = layer && layer.description ? layer.description.replace(/``/g, "") : "";
    if (!layer) return;
    if (layer.args.length === 0) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = `${layer.type} takes no arguments.`;
      box.append(p);
    }
    layer.args.forEach((arg, i) => {
      const id = `layer-arg-${i}`;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = arg.name;
      if (arg.required) label.append(Object.assign(document.createElement("span"), { className: "badge", textContent: "required" }));
      const input = document.createElement("input");
      input.id = id;
      input.dataset.arg = arg.name;
      input.dataset.required = arg.required ? "1" : "";
      input.autocomplete = "off";
      input.placeholder = arg.default !== undefined && arg.default !== null ? JSON.stringify(arg.default) : arg.required ? "" : "default";
      if (arg.description) input.title = arg.description;
      const wrap = document.createElement("div");
      wrap.className = "field compact";
      wrap.append(label, input);
      box.append(wrap);
    });
  }

  addLayer() {
    $("layer-add-error").textContent = "";
    const type = $("layer-type").value;
    const layer = { type };
    for (const input of $("layer-args").querySelectorAll("input")) {
      if (input.value.trim() === "") {
        if (input.dataset.required) {
          $("layer-add-error").textContent = `${type} needs ${input.dataset.arg}.`;
          input.focus();
          return;
        }
        continue;
      }
      layer[input.dataset.arg] = parseArg(input.value.trim());
    }
    let current;
    try {
      current = JSON.parse($("layers-json").value || "[]");
    } catch (error) {
      $("layer-add-error").textContent = `Fix the JSON first: ${error.message}`;
      return;
    }
    if (Array.isArray(current)) current.push(layer);
    else if (current && Array.isArray(current.layers)) current.layers.push(layer);
    else if (current && typeof current === "object") {
      const target = current.layers && typeof current.layers === "object" ? current.layers : current;
      let n = Object.keys(target).length;
      while (`${type.toLowerCase()}${n}` in target) n += 1;
      target[`${type.toLowerCase()}${n}`] = layer;
    }
    $("layers-json").value = formatLayers(current);
    this.announce(`Added ${type}.`);
    this.schedule(true);
  }

  clearErrors() {
    for (const id of ["layers-error", "module-seed-error", "module-error"]) $(id).textContent = "";
    $("layers-json").removeAttribute("aria-invalid");
    $("module-seed").removeAttribute("aria-invalid");
  }

  readBody() {
    let parsed;
    try {
      parsed = JSON.parse($("layers-json").value);
    } catch (error) {
      return { problem: ["layers-error", `Not valid JSON: ${error.message}`] };
    }
    const body = parsed && typeof parsed === "object" && !Array.isArray(parsed) && "layers" in parsed ? { ...parsed } : { layers: parsed };
    body.dtype = $("module-dtype").value;
    body.device = $("module-device").value;
    const seed = $("module-seed").value.trim();
    if (seed !== "") {
      if (!/^[0-9]+$/.test(seed) || BigInt(seed) > SEED_MAX) return { problem: ["module-seed-error", `seed is an integer from 0 to 2^64 \u2212 1; got ${seed}`] };
      body.seed = seed;
    } else if (typeof body.seed === "number") {
      body.seed = String(body.seed);
    }
    return { body };
  }

  async run() {
    this.clearErrors();
    const { body, problem } = this.readBody();
    this.onState(this.urlState());
    if (problem) {
      this.latest.next();
      $(problem[0]).textContent = problem[1];
      (problem[0] === "layers-error" ? $("layers-json") : $("module-seed")).setAttribute("aria-invalid", "true");
      $("module-spinner").hidden = true;
      this.setState("error");
      return;
    }
    this.lastBody = body;
    const signal = this.latest.next();
    this.setState("loading");
    const spinner = setTimeout(() => { $("module-spinner").hidden = false; }, 120);
    try {
      let answer;
      try {
        answer = await postJSON("/v1/module", this.sendBins ? { ...body, histogram_bins: SPARK_BINS } : body, signal);
      } catch (error) {
        const binsRefused = error instanceof ApiError && error.status === 422 && error.problems.some((p) => p.loc.includes("histogram_bins"));
        if (!binsRefused) throw error;
        this.sendBins = false; // this server's /v1/module takes no histogram_bins: stats without sparklines
        answer = await postJSON("/v1/module", body, signal);
      }
      $("module-unavailable").hidden = true;
      $("module-table").hidden = false;
      this.render(answer);
      this.setState("ready");
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
        $("module-unavailable").hidden = false;
        $("module-table").hidden = true;
        $("module-body").replaceChildren();
        $("module-summary").textContent = "";
        this.setState("unavailable");
        return;
      }
      this.showProblems(error instanceof ApiError ? error.problems : [{ loc: [], msg: String(error) }]);
      this.setState("error");
    } finally {
      clearTimeout(spinner);
      if (!signal.aborted) $("module-spinner").hidden = true;
      this.latest.done(signal);
    }
  }

  showProblems(problems) {
    const layers = [];
    const general = [];
    for (const { loc, msg } of problems) {
      const path = loc[0] === "body" ? loc.slice(1) : loc;
      if (path[0] === "layers" || path[0] === "overrides") {
        layers.push(`${this.describeLoc(path)}: ${msg}`);
      } else if (path[0] === "seed") {
        $("module-seed-error").textContent = msg;
        $("module-seed").setAttribute("aria-invalid", "true");
      } else {
        general.push(path.length ? `${path.join(".")}: ${msg}` : msg);
      }
    }
    if (layers.length) {
      $("layers-error").textContent = layers.join(" ");
      $("layers-json").setAttribute("aria-invalid", "true");
    }
    $("module-error").textContent = general.join(" ");
    this.announce(`Error: ${[...layers, ...general].join(" ")}`);
  }

  /**
   * "layers[0] (Linear) \u2192 out_features" from a loc such as ["layers", "list", 0, "Linear",
   * "out_features"]: pydantic puts the union's tags (list or object of layers, the layer type) in
   * the loc; they are dropped here, and the layer is named by its index or name and its type.
   */
  describeLoc(path) {
    const [head, ...rest] = path;
    const given = this.lastBody ? this.lastBody[head] : undefined;
    const isKey = (segment) => (Array.isArray(given) ? typeof segment === "number" : given && typeof given === "object" && segment in given);
    while (rest.length && !isKey(rest[0])) rest.shift();
    if (!rest.length) return path.join(".");
    const key = rest.shift();
    const entry = given[key];
    const type = entry && typeof entry === "object" ? entry.type : undefined;
    if (type !== undefined && rest[0] === type) rest.shift();
    const name = typeof key === "number" ? `${head}[${key}]` : `${head}[${JSON.stringify(key)}]`;
    return `${name}${type ? ` (${type})` : ""}${rest.length ? ` \u2192 ${rest.join(".")}` : ""}`;
  }

  render({ data, headers }) {
    const entries = Object.entries(data.tensors || {});
    let elements = 0;
    let bytes = 0;
    const rows = entries.map(([key, summary]) => {
      const numel = summary.shape.reduce((a, b) => a * b, 1);
      elements += numel;
      bytes += numel * (ELEMENT_BYTES[summary.dtype] ?? 4);
      const s = summary.stats || {};
      const tr = document.createElement("tr");
      tr.dataset.key = key;
      const cells = [
        ["key", key], ["shape", fmtShape(summary.shape)], ["dtype", summary.dtype], ["init", initOf(summary)],
        ["num", fmt(s.mean, 4)], ["num", fmt(s.std, 4)],
      ];
      cells.forEach(([cls, text], i) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        cell.className = cls;
        cell.textContent = text;
        tr.append(cell);
      });
      const spark = document.createElement("td");
      spark.className = "spark";
      spark.append(sparkline(s.histogram, `histogram of ${key}`));
      tr.append(spark);
      return tr;
    });
    $("module-body").replaceChildren(...rows);
    const seed = headers.get("x-init-seed") ?? (data.request && data.request.seed);
    $("module-summary").textContent = `${entries.length} tensors \u00b7 ${fmtInt(elements)} elements \u00b7 ${fmtBytes(bytes)} \u00b7 seed ${seed}`;
    this.announce(`Module initialized: ${entries.length} tensors.`);
  }
}
