// Talking to the service: JSON in and out, seeds as exact integers, errors as {field, msg}.

export class ApiError extends Error {
  /** status: HTTP status (0 when the server could not be reached); problems: [{loc, msg}]. */
  constructor(status, problems, detail) {
    super(problems.map((p) => p.msg).join("; ") || `HTTP ${status}`);
    this.status = status;
    this.problems = problems;
    this.detail = detail;
  }
}

/**
 * JSON text of a request body. Seeds go up to 2^64 - 1, beyond a JavaScript number's exact
 * integers, so the seed is kept as its decimal text and written into the JSON as it is.
 */
export function encodeBody(body) {
  const { seed, ...rest } = body;
  const text = JSON.stringify(rest);
  if (seed === undefined || seed === null || seed === "") return text;
  if (!/^[0-9]+$/.test(String(seed))) throw new Error(`seed must be a non-negative integer; got ${seed}`);
  return `${text.slice(0, -1)}${text.length > 2 ? "," : ""}"seed":${seed}}`;
}

function problemsOf(status, data) {
  const detail = data && data.detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => ({ loc: Array.isArray(d.loc) ? d.loc : [], msg: String(d.msg ?? d.message ?? d), type: d.type }));
  }
  if (typeof detail === "string") {
    return [{ loc: [], msg: detail, envVar: data.env_var ?? null, type: `http_${status}` }];
  }
  return [{ loc: [], msg: `the server answered ${status}`, type: `http_${status}` }];
}

async function send(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, [{ loc: [], msg: `could not reach the server (${error.message})` }]);
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const retry = response.headers.get("retry-after");
    const problems = problemsOf(response.status, data);
    if (retry) problems.forEach((p) => { p.msg += ` (retry after ${retry} s)`; });
    throw new ApiError(response.status, problems, data && data.detail);
  }
  return { data, headers: response.headers, status: response.status };
}

export function getJSON(url, signal) {
  return send(url, { headers: { Accept: "application/json" }, signal });
}

export function postJSON(url, body, signal) {
  return send(url, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: encodeBody(body),
    signal,
  });
}

/**
 * Which form field an error names. FastAPI's locs look like ["body", "init", "normal", "std"]
 * (the discriminated union adds the scheme's name), ["body", "shape"] or ["query", "seed"].
 * Returns "std", "shape", ... or null when the error belongs to the whole request.
 */
export function fieldOf(loc, schemeNames) {
  const path = loc.slice(loc[0] === "body" || loc[0] === "query" ? 1 : 0);
  if (path[0] === "init") {
    const rest = path.slice(1);
    if (rest.length && schemeNames.has(rest[0])) rest.shift();
    return rest.length ? String(rest[0]) : "scheme";
  }
  return path.length ? String(path[0]) : null;
}

/** Debounce: call fn after `ms` of quiet; .flush() runs a pending call now. */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
  wrapped.cancel = () => { clearTimeout(timer); timer = null; };
  return wrapped;
}

/** One request in flight at a time: starting a new one aborts the stale one. */
export class LatestOnly {
  constructor() { this.controller = null; }
  next() {
    if (this.controller) this.controller.abort();
    this.controller = new AbortController();
    return this.controller.signal;
  }
  abort() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }
  done(signal) { if (this.controller && this.controller.signal === signal) this.controller = null; }
}
