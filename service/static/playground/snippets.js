// The displayed tensor as a download URL, a curl command and Python client code. Each takes the
// recipe as sent ({shape, init, dtype, device, seed}) with the seed and device the server used,
// so all three give the bytes that were plotted.

function pyValue(value) {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(pyValue).join(", ")}]`;
  return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyValue(v)}`).join(", ")}}`;
}

function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

/** GET /v1/tensor?...: the same recipe as query parameters (docs/api.md §4.3). */
export function downloadUrl(origin, recipe) {
  const query = new URLSearchParams();
  query.set("shape", recipe.shape.join(","));
  query.set("scheme", recipe.init.scheme);
  for (const [key, value] of Object.entries(recipe.init)) {
    if (key === "scheme") continue;
    if (key === "gain" && value !== null && typeof value === "object") {
      query.set("gain_nonlinearity", value.nonlinearity);
      if (value.param !== undefined && value.param !== null) query.set("gain_param", String(value.param));
    } else {
      query.set(key, String(value));
    }
  }
  query.set("dtype", recipe.dtype);
  query.set("device", recipe.device);
  if (recipe.seed !== undefined && recipe.seed !== null && recipe.seed !== "") query.set("seed", String(recipe.seed));
  // Commas stay readable: URLSearchParams would write them as %2C.
  return `${origin}/v1/tensor?${query.toString().replace(/%2C/g, ",")}`;
}

/** The POST body as compact JSON, seed written from its exact decimal text. */
export function bodyJson(recipe) {
  const { seed, ...rest } = recipe;
  const text = JSON.stringify(rest);
  return seed === undefined || seed === null || seed === "" ? text : `${text.slice(0, -1)},"seed":${seed}}`;
}

export function curlCommand(origin, recipe, name = "weight") {
  return [
    `curl -X POST ${shellQuote(`${origin}/v1/tensor`)} \\`,
    "  -H 'Content-Type: application/json' \\",
    `  -d ${shellQuote(bodyJson(recipe))} \\`,
    `  -o ${name}.safetensors`,
  ].join("\n");
}

export function pythonCode(origin, recipe) {
  const args = [pyValue(recipe.shape), pyValue(recipe.init.scheme)];
  for (const [key, value] of Object.entries(recipe.init)) {
    if (key !== "scheme") args.push(`${key}=${pyValue(value)}`);
  }
  args.push(`dtype=${pyValue(recipe.dtype)}`, `device=${pyValue(recipe.device)}`);
  if (recipe.seed !== undefined && recipe.seed !== null && recipe.seed !== "") args.push(`seed=${recipe.seed}`);
  const call = `client.tensor(${args.join(", ")})`;
  const lines = ["from service.client import InitClient", "", `with InitClient(${pyValue(origin)}) as client:`];
  if (call.length + 13 <= 96) {
    lines.push(`    result = ${call}`);
  } else {
    lines.push("    result = client.tensor(");
    args.forEach((arg) => lines.push(`        ${arg},`));
    lines.push("    )");
  }
  lines.push("", "weight = result.tensor  # a torch.Tensor; also result.stats, result.request, result.provenance");
  return lines.join("\n");
}
