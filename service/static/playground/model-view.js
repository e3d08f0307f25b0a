// The model view: pick a preset from GET /v1/models (a well-known architecture, see docs/api.md,
// "Model presets"), edit its config in a form made from the preset's fields (defaults shown, only
// changed fields sent), and see every tensor of its from-scratch state_dict from POST /v1/model
// in JSON mode: key, shape, dtype, the init rule in words, mean, std and a small histogram.
// The preset, the changed fields and the seed live in the address's hash (#model?model=...).
// While the server has no /v1/models (404) the view says so.

import { ApiError, debounce, getJSON, LatestOnly, postJSON } from "./api.js";
import { DTYPE_BYTES, fmt, fmtBytes, fmtInt, fmtShape } from "./format.js";
import { sparkline } from "./plot.js";

const $ = (id) => document.getElementById(id);
const SEED_MAX = (1n << 64n) - 1n;
const SPARK_BINS = 24;
const ELEMENT_BYTES = { ...DTYPE_BYTES, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };

/** Small configs that keep a preset fast to make; only the fields a preset has are used. */
export const SMALL_CONFIGS = {
  "transformers/GPT2LMHeadModel": { n_layer: 2, n_embd: 64, n_head: 4, vocab_size: 1000, n_positions: 128 },
  "transformers/BertModel": { num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 128 },
  "transformers/LlamaForCausalLM": { num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 4, intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 128 },
  "transformers/ViTModel": { num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, intermediate_size: 128, image_size: 32, patch_size: 8 },
  "timm/VisionTransformer": { depth: 2, embed_dim: 64, num_heads: 4, img_size: 32, patch_size: 8, num_classes: 10 },
  "nanogpt/GPT": { n_layer: 2, n_embd: 64, n_head: 4, vocab_size: 1000, block_size: 128 },
  "torchvision/resnet18": { num_classes: 10 },
  "torchvision/resnet50": { num_classes: 10 },
};
const GENERIC_SMALL = {
  n_layer: 2, num_hidden_layers: 2, depth: 2, n_embd: 64, hidden_size: 64, embed_dim: 64, n_head: 4,
  num_attention_heads: 4, num_heads: 4, vocab_size: 1000, intermediate_size: 128,
};

const KIND = {
  int: "integer", integer: "integer", float: "number", number: "number", bool: "boolean", boolean: "boolean",
  str: "string", string: "string",
};

function kindOf(field) {
  const type = Array.isArray(field.type) ? field.type.find((t) => t !== "null") : field.type;
  return KIND[String(type).toLowerCase()] ?? "json";
}

/** A value as the form (and the address) writes it. */
function textOf(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function node(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") n.className = value;
    else if (key === "text") n.textContent = value;
    else n.setAttribute(key, value === true ? "" : String(value));
  }
  n.append(...children.filter((c) => c !== null && c !== undefined));
  return n;
}

/** Which config field an error's loc names: ["body", "config", "n_layer"] -> "n_layer". */
export function configFieldOf(loc) {
  const path = loc.slice(loc[0] === "body" || loc[0] === "query" ? 1 : 0);
  if (path[0] === "config") return path.length > 1 ? { config: String(path[1]) } : { top: "config" };
  if (path[0] === "model" || path[0] === "name") return { top: "model" };
  if (path[0] === "seed") return { top: "seed" };
  if (path.length === 1 && typeof path[0] === "string") return { config: path[0], maybe: true };
  return { top: null };
}

export class ModelView {
  constructor(announce, onState) {
    this.announce = announce;
    this.onState = onState; // called with the view's URL state whenever it changes
    this.latest = new LatestOnly();
    this.started = false;
    this.presets = {};
    this.fields = new Map();
    this.debounced = debounce(() => this.run(), 400);
    this.setState("idle");
  }

  setState(state) {
    document.body.dataset.modelState = state;
    $("model-results").setAttribute("aria-busy", state === "loading" ? "true" : "false");
  }

  /** First showing: load the presets, then restore `params` (the hash's state) or a small config. */
  async start(params) {
    if (this.started) return;
    this.started = true;
    this.setState("loading");
    let data;
    try {
      ({ data } = await getJSON("/v1/models"));
    } catch (error) {
      const missing = error instanceof ApiError && error.status === 404;
      $("model-unavailable").hidden = false;
      $("model-unavailable").textContent = missing
        ? "This server does not serve GET /v1/models yet (it answered 404): no model presets to show."
        : `Could not load the model presets from /v1/models: ${error.message}`;
      this.setState(missing ? "unavailable" : "error");
      return;
    }
    this.presets = data.models || {};
    this.torch = data.torch;
    const select = $("model-name");
    for (const [name, preset] of Object.entries(this.presets)) {
      select.append(new Option(preset.reference ? `${name}` : name, name));
    }
    if (Object.keys(this.presets).length === 0) {
      $("model-unavailable").hidden = false;
      $("model-unavailable").textContent = "This server lists no model presets.";
      this.setState("unavailable");
      return;
    }
    select.addEventListener("change", () => this.showPreset(null));
    $("model-seed").addEventListener("input", () => this.schedule(false));
    $("model-small").addEventListener("click", () => this.showPreset(this.smallConfig(select.value)));
    $("model-defaults").addEventListener("click", () => this.showPreset({}));
    $("model-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.schedule(true);
    });

    const wanted = params && params.get("model");
    if (wanted && this.presets[wanted]) {
      select.value = wanted;
      if (params.has("seed")) $("model-seed").value = params.get("seed");
      const config = {};
      for (const field of this.presets[wanted].fields || []) {
        if (params.has(field.name)) config[field.name] = params.get(field.name);
      }
      this.showPreset(config, true);
    } else {
      select.value = this.presets["transformers/GPT2LMHeadModel"] ? "transformers/GPT2LMHeadModel" : Object.keys(this.presets)[0];
      this.showPreset(null);
    }
  }

  smallConfig(name) {
    const preset = this.presets[name];
    const names = new Set((preset.fields || []).map((f) => f.name));
    const small = SMALL_CONFIGS[name] ?? GENERIC_SMALL;
    return Object.fromEntries(Object.entries(small).filter(([key]) => names.has(key)));
  }

  /**
   * Build the config form for the selected preset. `config`: field -> value (or raw text, when
   * `raw`) to start from; null: the preset's small config.
   */
  showPreset(config, raw = false) {
    const name = $("model-name").value;
    const preset = this.presets[name];
    const start = config ?? this.smallConfig(name);
    $("model-doc").textContent = [preset.reference, preset.library && preset.versions ? `${preset.library} ${preset.versions}` : preset.library, preset.doc]
      .filter(Boolean).join(" \u00b7 ");
    const size = preset.default_config || {};
    const small = Object.keys(start).length > 0;
    const sizeText = size.parameters !== undefined
      ? `The reference default config has ${fmtInt(size.parameters)} parameters (${fmtBytes(size.bytes ?? 0)} of state_dict in ${fmtInt(size.tensors)} tensors), which takes a while to make.`
      : "The reference default config can be large and slow to make.";
    $("model-size-note").textContent = small
      ? `${sizeText} A small config is filled in; \u201cReference defaults\u201d clears it.`
      : sizeText;

    const main = $("model-fields");
    const other = $("model-other-fields");
    main.replaceChildren();
    other.replaceChildren();
    this.fields = new Map();
    let others = 0;
    for (const field of preset.fields || []) {
      const built = this.buildField(field, field.name in start ? start[field.name] : undefined, raw);
      this.fields.set(field.name, built);
      if (field.affects_weights === false) {
        other.append(built.wrap);
        others += 1;
      } else {
        main.append(built.wrap);
      }
    }
    $("model-other").hidden = others === 0;
    $("model-other-count").textContent = String(others);
    if ((preset.fields || []).length === 0) main.append(node("p", { class: "muted", text: `${name} takes no config fields.` }));
    this.schedule(true);
  }

  buildField(field, initial, raw) {
    const id = `model-field-${field.name}`;
    const kind = kindOf(field);
    const defaultText = textOf(field.default);
    // A select's option values are JSON text, so "" (a choice) and null stay apart.
    let control;
    const choices = field.choices && field.choices.length ? [...field.choices] : kind === "boolean" ? [true, false] : null;
    if (choices) {
      if ((field.nullable || field.default === null) && !choices.includes(null)) choices.unshift(null);
      control = node("select", { id, name: field.name });
      for (const choice of choices) {
        control.append(new Option(choice === "" ? "'' (empty)" : choice === null ? "null" : String(choice), JSON.stringify(choice)));
      }
    } else {
      control = node("input", {
        id, name: field.name, type: "text",
        inputmode: kind === "integer" ? "numeric" : kind === "number" ? "decimal" : undefined,
        autocomplete: "off", spellcheck: "false", placeholder: defaultText || (field.nullable ? "null" : ""),
      });
    }
    const textFor = (value) => (choices ? JSON.stringify(value ?? null) : textOf(value));
    let start = initial === undefined ? textFor(field.default) : raw ? String(initial) : textFor(initial);
    // The address writes a choice as plain text (relu), or as JSON where plain text is ambiguous ("").
    if (choices && raw && initial !== undefined && ![...control.options].some((o) => o.value === start)) start = JSON.stringify(start);
    control.value = start;
    control.addEventListener(control.tagName === "SELECT" ? "change" : "input", () => this.schedule(control.tagName === "SELECT"));
    const facts = [`${kind}${field.nullable ? " or null" : ""}`, `default ${JSON.stringify(field.default ?? null)}`];
    if (field.minimum !== undefined && field.minimum !== null) facts.push(`\u2265 ${field.minimum}`);
    const hintText = `${field.doc ? `${field.doc.replace(/\.?$/, ".")} ` : ""}${facts.join(" \u00b7 ")}`;
    const hint = node("p", { class: "hint", id: `${id}-hint`, text: hintText });
    const error = node("p", { class: "error", id: `${id}-error`, "aria-live": "polite" });
    control.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
    const label = node("label", { for: id }, node("span", { class: "param-name", text: field.name }));
    const changed = node("span", { class: "badge changed", text: "changed", hidden: true });
    label.append(changed);
    const wrap = node("div", { class: "field", "data-field": field.name }, label, control, hint, error);
    const read = () => {
      if (choices) {
        try {
          return { value: JSON.parse(control.value) };
        } catch {
          return { problem: `${field.name}: pick one of ${choices.map((c) => JSON.stringify(c)).join(", ")}` };
        }
      }
      const text = control.value.trim();
      if (text === "" || text === "null") {
        if (field.nullable || field.default === null) return { value: null };
        return { value: field.default };
      }
      if (kind === "integer") {
        if (!/^-?[0-9]+$/.test(text)) return { problem: `${field.name} is a whole number; got ${text}` };
        return { value: Number(text) };
      }
      if (kind === "number") {
        const value = Number(text);
        if (!Number.isFinite(value)) return { problem: `${field.name} is a number; got ${text}` };
        return { value };
      }
      if (kind === "string") return { value: control.value };
      try {
        return { value: JSON.parse(text) };
      } catch {
        return { value: text };
      }
    };
    return {
      wrap, error, control, field,
      read,
      raw: () => {
        if (!choices) return control.value;
        const value = JSON.parse(control.value);
        const plain = typeof value === "string" && value !== "" && ![...control.options].some((o) => o.value === value);
        return plain ? value : control.value;
      },
      isDefault: (value) => same(value, field.default ?? null),
      markChanged: (on) => { changed.hidden = !on; },
    };
  }

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
    for (const error of document.querySelectorAll("#model-form .error")) error.textContent = "";
    for (const input of document.querySelectorAll("#model-form [aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  /** The request in the form (only changed fields in config), or the problems that stop it. */
  readBody() {
    const problems = [];
    const config = {};
    for (const [name, f] of this.fields) {
      const read = f.read();
      if (read.problem) {
        problems.push({ field: name, msg: read.problem });
        continue;
      }
      const changed = !f.isDefault(read.value);
      f.markChanged(changed);
      if (changed) config[name] = read.value;
    }
    const body = { model: $("model-name").value, config, histogram_bins: SPARK_BINS, tensors: null };
    const seed = $("model-seed").value.trim();
    if (seed !== "") {
      if (!/^[0-9]+$/.test(seed) || BigInt(seed) > SEED_MAX) problems.push({ top: "seed", msg: `seed is an integer from 0 to 2^64 \u2212 1; got ${seed}` });
      else body.seed = seed;
    }
    return { body, problems };
  }

  /** The view's state for the address: the preset, the changed fields as typed, the seed. */
  urlState() {
    const params = new URLSearchParams();
    if (!$("model-name").value) return params;
    params.set("model", $("model-name").value);
    for (const [name, f] of this.fields) {
      const read = f.read();
      if (read.problem || !f.isDefault(read.value)) params.set(name, f.raw().trim() === "" ? "null" : f.raw().trim());
    }
    const seed = $("model-seed").value.trim();
    if (seed !== "0") params.set("seed", seed);
    return params;
  }

  showProblems(problems) {
    const general = [];
    for (const problem of problems) {
      let target = null;
      let input = null;
      const where = problem.field ? { config: problem.field } : problem.top ? { top: problem.top } : configFieldOf(problem.loc || []);
      if (where.config && this.fields.has(where.config)) {
        const f = this.fields.get(where.config);
        target = f.error;
        input = f.control;
      } else if (where.top === "seed") {
        target = $("model-seed-error");
        input = $("model-seed");
      } else if (where.top === "model") {
        target = $("model-name-error");
        input = $("model-name");
      }
      if (target) {
        target.textContent = target.textContent ? `${target.textContent} ${problem.msg}` : problem.msg;
        input.setAttribute("aria-invalid", "true");
      } else {
        const loc = (problem.loc || []).filter((p) => p !== "body").join(".");
        general.push(loc ? `${loc}: ${problem.msg}` : problem.msg);
      }
    }
    $("model-error").textContent = general.join(" ");
  }

  async run() {
    this.clearErrors();
    const { body, problems } = this.readBody();
    this.onState(this.urlState());
    if (problems.length) {
      this.latest.next();
      this.showProblems(problems);
      $("model-spinner").hidden = true;
      this.setState("error");
      return;
    }
    const signal = this.latest.next();
    this.setState("loading");
    $("model-spinner").hidden = false;
    try {
      const { data } = await postJSON("/v1/model", body, signal);
      this.render(body, data);
      $("model-results").classList.remove("stale");
      this.setState("ready");
    } catch (error) {
      if (error.name === "AbortError") return;
      const found = error instanceof ApiError ? error.problems : [{ loc: [], msg: String(error) }];
      this.showProblems(found);
      $("model-results").classList.add("stale");
      this.announce(`Error: ${found.map((p) => p.msg).join(" ")}`);
      this.setState("error");
    } finally {
      if (!signal.aborted) $("model-spinner").hidden = true;
      this.latest.done(signal);
    }
  }

  render(body, data) {
    const tensors = data.tensors || {};
    const order = data.request && Array.isArray(data.request.tensor_order) ? data.request.tensor_order.filter((k) => k in tensors) : Object.keys(tensors);
    let elements = 0;
    let bytes = 0;
    const rows = order.map((key) => {
      const summary = tensors[key];
      const numel = summary.shape.reduce((a, b) => a * b, 1);
      elements += numel;
      bytes += numel * (ELEMENT_BYTES[summary.dtype] ?? 4);
      const s = summary.stats || {};
      const tr = node("tr", { "data-key": key });
      const init = typeof s.init === "string" ? s.init : s.init ? JSON.stringify(s.init) : summary.init ?? "\u2014";
      const cells = [
        ["key", key], ["shape", fmtShape(summary.shape)], ["dtype", summary.dtype], ["init", init],
        ["num", s.mean === undefined ? "\u2014" : fmt(s.mean, 4)], ["num", s.std === undefined ? "\u2014" : fmt(s.std, 4)],
      ];
      for (const [cls, text] of cells) tr.append(node("td", { class: cls, text }));
      const spark = node("td", { class: "spark" });
      spark.append(sparkline(s.histogram, `histogram of ${key}: ${fmtInt(numel)} values from ${fmt(s.min, 4)} to ${fmt(s.max, 4)}`));
      tr.append(spark);
      return tr;
    });
    $("model-body").replaceChildren(...rows);
    const seed = data.request && data.request.seed !== undefined ? data.request.seed : body.seed;
    const changed = Object.keys(body.config);
    $("model-summary").textContent = `${body.model}: ${fmtInt(order.length)} tensors \u00b7 ${fmtInt(elements)} elements \u00b7 ${fmtBytes(bytes)} \u00b7 seed ${seed}`
      + ` \u00b7 ${changed.length ? `changed: ${changed.map((k) => `${k}=${textOf(body.config[k])}`).join(", ")}` : "the reference's default config"}`
      + (data.provenance && data.provenance.torch ? ` \u00b7 torch ${data.provenance.torch}` : "");
    const warnings = (data.provenance && data.provenance.warnings) || [];
    $("model-warnings").hidden = warnings.length === 0;
    $("model-warnings").replaceChildren(...warnings.map((w) => node("p", { text: w })));
    this.announce(`Made ${body.model}: ${order.length} tensors.`);
  }
}
