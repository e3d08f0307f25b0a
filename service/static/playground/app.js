// Entry point: load the catalog and the devices, then start the tensor view; the module and
// model views start the first time their tab is opened. Tabs follow the WAI-ARIA tabs pattern
// (arrow keys, Home/End). The address holds the whole view (see url.js): the tensor recipe in the
// query, the open tab and its state in the hash (#module?..., #model?...), and "Share this view"
// copies it.

import { getJSON } from "./api.js";
import { ModelView } from "./model-view.js";
import { ModuleView } from "./module-view.js";
import { TensorView } from "./tensor-view.js";
import { onUrlChange, readHash, setHash } from "./url.js";

const $ = (id) => document.getElementById(id);

function announce(text) {
  const region = $("announcer");
  region.textContent = "";
  // A fresh text node each time, so the same message is read again.
  requestAnimationFrame(() => { region.textContent = text; });
}

function setupTabs(onShow) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab, focus, params) => {
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute("aria-selected", String(selected));
      t.tabIndex = selected ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    onShow(tab.dataset.view, params);
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab, false, null));
    tab.addEventListener("keydown", (event) => {
      const i = tabs.indexOf(tab);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      select(tabs[(next + tabs.length) % tabs.length], true, null);
    });
  }
  const { view, params } = readHash();
  const initial = tabs.find((t) => t.dataset.view === view) || tabs[0];
  select(initial, false, params);
}

function setupShare() {
  const link = $("share-link");
  onUrlChange((href) => { link.href = href; });
  link.href = location.href;
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    const href = location.href;
    let copied = true;
    try {
      await navigator.clipboard.writeText(href);
    } catch {
      const area = document.createElement("textarea");
      area.value = href;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.append(area);
      area.select();
      copied = document.execCommand("copy");
      area.remove();
    }
    $("share-status").textContent = copied ? "Link copied" : "Copy the address bar to share";
    announce(copied ? "A link to this view is copied." : "Copy the address from the address bar.");
    setTimeout(() => { $("share-status").textContent = ""; }, 2500);
  });
}

async function main() {
  let catalog;
  let devices = null;
  try {
    const [schemes, deviceList] = await Promise.all([getJSON("/v1/schemes"), getJSON("/v1/devices").catch(() => null)]);
    catalog = schemes.data.schemes;
    devices = deviceList && deviceList.data;
  } catch (error) {
    $("load-error").hidden = false;
    $("load-error").textContent = `Could not load the scheme catalog from /v1/schemes: ${error.message}`;
    return;
  }
  if (devices) {
    $("server-meta").textContent = `initsvc ${devices.service_version} \u00b7 torch ${devices.torch} \u00b7 ${devices.devices.map((d) => d.device).join(", ")}`;
  }
  setupShare();
  let current = "tensor";
  // A view's state goes into the hash only while that view is the one shown.
  const stateOf = (view) => (params) => { if (current === view) setHash(view, params); };
  const tensorView = new TensorView(catalog, devices, announce);
  const moduleView = new ModuleView(devices, announce, stateOf("module"));
  const modelView = new ModelView(announce, stateOf("model"));
  setupTabs((view, params) => {
    current = view;
    if (view === "module" || view === "model") {
      const shown = view === "module" ? moduleView : modelView;
      setHash(view, shown.started ? shown.urlState() : params);
      shown.start(params);
    } else {
      setHash("tensor", null);
    }
  });
  document.body.dataset.ready = "true";
  return tensorView;
}

main();
