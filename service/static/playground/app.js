// Entry point: load the catalog and the devices, then start the tensor view; the module view
// starts the first time its tab is opened. Tabs follow the WAI-ARIA tabs pattern (arrow keys,
// Home/End), and the address's #module opens the module view.

import { getJSON } from "./api.js";
import { ModuleView } from "./module-view.js";
import { TensorView } from "./tensor-view.js";

const $ = (id) => document.getElementById(id);

function announce(text) {
  const region = $("announcer");
  region.textContent = "";
  // A fresh text node each time, so the same message is read again.
  requestAnimationFrame(() => { region.textContent = text; });
}

function setupTabs(onShow) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab, focus) => {
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute("aria-selected", String(selected));
      t.tabIndex = selected ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    const view = tab.dataset.view;
    history.replaceState(null, "", view === "tensor" ? `${location.pathname}${location.search}` : `${location.pathname}${location.search}#${view}`);
    onShow(view);
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const i = tabs.indexOf(tab);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      select(tabs[(next + tabs.length) % tabs.length], true);
    });
  }
  const initial = tabs.find((t) => `#${t.dataset.view}` === location.hash) || tabs[0];
  select(initial, false);
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
  const tensorView = new TensorView(catalog, devices, announce);
  const moduleView = new ModuleView(devices, announce);
  setupTabs((view) => {
    if (view === "module") moduleView.start();
  });
  document.body.dataset.ready = "true";
  return tensorView;
}

main();
