// The scheme's parameter inputs, built from /v1/schemes: one input per parameter the scheme has,
// with its default, its constraints and torch's description; gain as a number or as a
// nonlinearity (+ param). Also shapes: parsing, and fitting a shape to a scheme's shape rule.

let uid = 0;

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

// Values that make a required parameter with no default draw something worth looking at.
const EXAMPLES = { val: 0.5, sparsity: 0.1 };

function constraintText(p) {
  const parts = [];
  if (p.minimum !== undefined) parts.push(`\u2265 ${p.minimum}`);
  if (p.exclusiveMinimum !== undefined) parts.push(`> ${p.exclusiveMinimum}`);
  if (p.maximum !== undefined) parts.push(`\u2264 ${p.maximum}`);
  if (p.exclusiveMaximum !== undefined) parts.push(`< ${p.exclusiveMaximum}`);
  return parts.join(", ");
}

function gainSpecOf(p) {
  const options = p.anyOf || [];
  const spec = options.find((o) => o.type === "object" && o.properties && o.properties.nonlinearity);
  const number = options.find((o) => o.type === "number") || {};
  return spec ? { nonlinearities: spec.properties.nonlinearity.enum || [], number } : null;
}

/** A field: wrapper with label, control, hint and an error line the API's messages go to. */
function fieldShell(name, labelText, control, hintText, required) {
  const id = control.id;
  const hint = node("p", { class: "hint", id: `${id}-hint`, text: hintText });
  const error = node("p", { class: "error", id: `${id}-error`, "aria-live": "polite" });
  control.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
  const label = node("label", { for: id }, node("span", { class: "param-name", text: labelText }));
  if (required) label.append(node("span", { class: "badge", text: "required" }));
  const wrap = node("div", { class: "field", "data-field": name }, label, control, hintText ? hint : null, error);
  return { wrap, error, control };
}

/**
 * Build the inputs for one scheme's parameters into `container`.
 * Returns {fields: Map(name -> {error, focus, read(), reset()}), values()}.
 */
export function buildParams(container, scheme, memory, onChange) {
  container.replaceChildren();
  const fields = new Map();
  const remembered = memory[scheme.name] || {};
  if (scheme.parameters.length === 0) {
    container.append(node("p", { class: "muted empty-params", text: `${scheme.name} takes no parameters.` }));
  }
  for (const p of scheme.parameters) {
    uid += 1;
    const id = `p-${p.name}-${uid}`;
    const description = (p.description || "").replace(/``/g, "");
    const hintParts = [description];
    const limits = constraintText(p);
    if (limits) hintParts.push(`Allowed: ${limits}.`);
    if (p.default !== undefined && p.default !== null) hintParts.push(`Default ${p.default}.`);
    const gain = gainSpecOf(p);
    if (gain) {
      fields.set(p.name, gainField(container, p, id, gain, remembered[p.name], onChange));
      continue;
    }
    let control;
    if (p.enum) {
      control = node("select", { id, name: p.name });
      for (const option of p.enum) control.append(node("option", { value: option, text: option }));
      control.value = remembered[p.name] ?? p.default ?? p.enum[0];
      control.addEventListener("change", onChange);
    } else {
      const integer = p.type === "integer";
      const initial = remembered[p.name] ?? (p.default ?? EXAMPLES[p.name] ?? (integer ? 1 : 0));
      control = node("input", {
        id, name: p.name, type: "number", step: integer ? 1 : "any", inputmode: "decimal", autocomplete: "off",
        min: p.minimum, max: p.maximum, placeholder: p.default ?? "",
      });
      control.value = String(initial);
      control.addEventListener("input", onChange);
    }
    const { wrap, error } = fieldShell(p.name, p.name, control, hintParts.filter(Boolean).join(" "), p.required);
    container.append(wrap);
    fields.set(p.name, {
      error,
      focus: () => control.focus(),
      raw: () => control.value,
      read() {
        if (p.enum) return { value: control.value };
        if (control.validity.badInput) return { problem: `${p.name} must be a number` };
        if (control.value.trim() === "") {
          return p.required ? { problem: `${p.name} is required` } : { omit: true };
        }
        const value = Number(control.value);
        if (p.type === "integer" && !Number.isInteger(value)) return { problem: `${p.name} must be a whole number; got ${control.value}` };
        return { value };
      },
      isDefault: (value) => p.default !== undefined && value === p.default,
    });
  }
  return fields;
}

function gainField(container, p, id, gain, remembered, onChange) {
  const numberInput = node("input", { id, name: "gain", type: "number", step: "any", inputmode: "decimal", min: gain.number.minimum, placeholder: p.default ?? 1 });
  const nl = node("select", { id: `${id}-nl`, name: "gain-nonlinearity" });
  for (const name of gain.nonlinearities) nl.append(node("option", { value: name, text: name }));
  const param = node("input", { id: `${id}-param`, name: "gain-param", type: "number", step: "any", inputmode: "decimal", placeholder: "0.01" });
  const kindNumber = node("input", { type: "radio", name: `${id}-kind`, value: "number", id: `${id}-kind-number` });
  const kindNl = node("input", { type: "radio", name: `${id}-kind`, value: "nonlinearity", id: `${id}-kind-nl` });
  const state = remembered || { kind: "number", number: String(p.default ?? 1), nonlinearity: "relu", param: "" };
  numberInput.value = state.number;
  nl.value = state.nonlinearity;
  param.value = state.param;
  (state.kind === "number" ? kindNumber : kindNl).checked = true;

  const numberBox = node("div", { class: "gain-number" }, node("label", { for: id, class: "sub-label", text: "value" }), numberInput);
  const paramBox = node("div", { class: "gain-param" }, node("label", { for: param.id, class: "sub-label", text: "negative slope" }), param);
  const nlBox = node("div", { class: "gain-nl" }, node("div", {}, node("label", { for: nl.id, class: "sub-label", text: "calculate_gain(" }), nl), paramBox);
  const sync = () => {
    const byName = kindNl.checked;
    numberBox.hidden = byName;
    nlBox.hidden = !byName;
    paramBox.hidden = !(byName && nl.value === "leaky_relu");
  };
  sync();
  for (const radio of [kindNumber, kindNl]) radio.addEventListener("change", () => { sync(); onChange(); (kindNl.checked ? nl : numberInput).focus(); });
  nl.addEventListener("change", () => { sync(); onChange(); });
  numberInput.addEventListener("input", onChange);
  param.addEventListener("input", onChange);

  const hint = node("p", { class: "hint", id: `${id}-hint`, text: `${(p.description || "").replace(/``/g, "")} Default ${p.default ?? 1}.` });
  const error = node("p", { class: "error", id: `${id}-error`, "aria-live": "polite" });
  for (const control of [numberInput, nl, param]) control.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
  const kinds = node("div", { class: "segmented" },
    node("label", { for: kindNumber.id }, kindNumber, node("span", { text: "number" })),
    node("label", { for: kindNl.id }, kindNl, node("span", { text: "from nonlinearity" })));
  const fieldset = node("fieldset", { class: "field gain", "data-field": "gain" },
    node("legend", {}, node("span", { class: "param-name", text: "gain" })), kinds, numberBox, nlBox, hint, error);
  container.append(fieldset);
  return {
    error,
    focus: () => (kindNl.checked ? nl : numberInput).focus(),
    raw: () => ({ kind: kindNl.checked ? "nonlinearity" : "number", number: numberInput.value, nonlinearity: nl.value, param: param.value }),
    read() {
      if (kindNl.checked) {
        const spec = { nonlinearity: nl.value };
        if (nl.value === "leaky_relu" && param.value.trim() !== "") {
          if (param.validity.badInput) return { problem: "the negative slope must be a number" };
          spec.param = Number(param.value);
        }
        return { value: spec };
      }
      if (numberInput.validity.badInput) return { problem: "gain must be a number" };
      if (numberInput.value.trim() === "") return { omit: true };
      return { value: Number(numberInput.value) };
    },
    isDefault: (value) => typeof value === "number" && value === p.default,
  };
}

/** "256, 784", "256x784" or "256 784" -> [256, 784]; "" -> [] (0-d). Throws with a message. */
export function parseShape(text) {
  const trimmed = text.trim().replace(/^\[|\]$/g, "");
  if (trimmed === "") return [];
  const parts = trimmed.split(/[\s,x\u00d7]+/).filter(Boolean);
  for (const part of parts) {
    if (!/^[0-9]+$/.test(part)) throw new Error(`shape is a list of non-negative integers such as 256, 784; got "${part}"`);
  }
  return parts.map(Number);
}

/** The dimension counts a catalog shape_rule allows, or null for "any" (or a rule not understood). */
export function allowedDims(rule) {
  let m = /exactly (\d+)-D/.exec(rule);
  if (m) return { test: (n) => n === Number(m[1]), min: Number(m[1]), max: Number(m[1]) };
  m = /at least (\d+)-D/.exec(rule);
  if (m) return { test: (n) => n >= Number(m[1]), min: Number(m[1]), max: Infinity };
  const listed = (rule.match(/\d+/g) || []).map(Number);
  if (/-D/.test(rule) && listed.length) return { test: (n) => listed.includes(n), min: Math.min(...listed), max: Math.max(...listed) };
  return null;
}

/** The shape itself when it meets the rule, else the nearest shape that does (kernels of 3). */
export function fitShape(rule, shape) {
  const allowed = allowedDims(rule);
  if (!allowed || allowed.test(shape.length)) return shape;
  const fitted = shape.filter((d) => d > 0).slice(0, Math.min(allowed.max, 5));
  const base = [64, 64];
  while (fitted.length < Math.min(2, allowed.min)) fitted.push(fitted[0] ?? base[fitted.length]);
  while (fitted.length < allowed.min) fitted.push(3);
  return fitted;
}
