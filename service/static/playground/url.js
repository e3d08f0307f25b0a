// The page's address holds its whole view, so a link restores it: the tensor recipe and the
// histogram's settings in the query (?scheme=normal&std=2&shape=64,64&bins=120&log=1&y=density),
// the open tab and its own state in the hash (#model?name=nanogpt/GPT&n_layer=2,
// #module?layers=[...]). Every change goes through replaceUrl, which keeps the share link current.

const listeners = [];

/** The hash as {view, params}: "#model?name=x" -> {view: "model", params: URLSearchParams("name=x")}. */
export function readHash(hash = location.hash) {
  const text = hash.replace(/^#/, "");
  const at = text.indexOf("?");
  const view = at < 0 ? text : text.slice(0, at);
  return { view, params: new URLSearchParams(at < 0 ? "" : text.slice(at + 1)) };
}

/** URLSearchParams as text, with commas and slashes left readable. */
export function queryText(params) {
  return params.toString().replace(/%2C/gi, ",").replace(/%2F/gi, "/");
}

export function replaceUrl(url) {
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(null, "", url);
  for (const listener of listeners) listener(location.href);
}

/** Replace the query (the tensor view's state), keeping the hash. */
export function setQuery(params) {
  const text = queryText(params);
  replaceUrl(`${location.pathname}${text ? `?${text}` : ""}${location.hash}`);
}

/** Replace the hash: the open view and its state; the tensor view, the default, has none. */
export function setHash(view, params) {
  const text = params ? queryText(params) : "";
  const hash = view === "tensor" && !text ? "" : `#${view}${text ? `?${text}` : ""}`;
  replaceUrl(`${location.pathname}${location.search}${hash}`);
}

export function onUrlChange(listener) {
  listeners.push(listener);
}
