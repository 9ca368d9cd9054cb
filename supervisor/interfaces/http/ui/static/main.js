// The page's start: which keys the server wants, the key prompt, the tabs, the model and
// language pickers. Nothing from the API is shown until a request with the key succeeded.

import { ApiError, Unreachable, connection, json, keys } from "./api.js";
import { FileView } from "./file.js";
import { LiveView } from "./live.js";
import { ModelsView } from "./models.js";

const $ = (id) => document.getElementById(id);
const TABS = ["live", "file", "models"];
const RETRY_MS = 3000;

let auth = null; // {api_key, admin_key}: which keys the server asks for
let models = []; // the last /v1/models list
let views = null;

async function boot() {
  try {
    auth = await json("/ui/auth.json");
  } catch (error) {
    showBanner(error.message);
    setTimeout(boot, RETRY_MS);
    return;
  }
  if (auth.api_key && !keys.api()) {
    askForKey("");
    return;
  }
  try {
    models = (await json("/v1/models")).data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      keys.forget(); // it was kept from earlier in this tab, and is no longer one of the server's keys
      askForKey("The key this tab held is no longer accepted: enter a current one.");
    } else {
      showBanner(error.message);
      setTimeout(boot, RETRY_MS);
    }
    return;
  }
  showApp();
}

function askForKey(message) {
  $("loading").hidden = true;
  $("view-key").hidden = false;
  $("key-message").textContent = message;
  $("key-input").focus();
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  const button = event.submitter;
  button.disabled = true;
  $("key-message").textContent = "Checking the key…";
  try {
    models = (await json("/v1/models", { key })).data;
  } catch (error) {
    $("key-message").textContent =
      error instanceof ApiError && error.status === 401
        ? "That key was not accepted. Ask whoever runs this server for one of its api_keys."
        : error.message;
    $("key-input").select();
    return;
  } finally {
    button.disabled = false;
  }
  keys.setApi(key);
  $("key-input").value = "";
  $("view-key").hidden = true;
  showApp();
});

$("forget-key").addEventListener("click", () => {
  keys.forget();
  location.reload();
});

function showApp() {
  $("loading").hidden = true;
  $("tabs").hidden = false;
  $("forget-key").hidden = !keys.api();
  const choice = () => ({ model: $("model").value, language: $("language").value });
  views = {
    live: new LiveView(choice),
    file: new FileView(choice),
    models: new ModelsView(auth, fillPickers),
  };
  fillPickers(models);
  const wanted = location.hash.slice(1);
  selectTab(TABS.includes(wanted) ? wanted : "live");
}

// --- tabs: click, or the arrow keys (the WAI-ARIA tabs pattern) ---

function selectTab(name, focus = false) {
  for (const tab of TABS) {
    const selected = tab === name;
    const button = $(`tab-${tab}`);
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`view-${tab}`).hidden = !selected;
  }
  $("picker").hidden = name === "models";
  views.models.setVisible(name === "models");
  history.replaceState(null, "", `#${name}`);
  if (focus) $(`tab-${name}`).focus();
}

$("tabs").addEventListener("click", (event) => {
  const tab = event.target.closest("[role=tab]");
  if (tab) selectTab(tab.id.slice(4));
});

$("tabs").addEventListener("keydown", (event) => {
  const current = TABS.indexOf(document.activeElement.id.slice(4));
  if (current < 0) return;
  const next = {
    ArrowRight: (current + 1) % TABS.length,
    ArrowLeft: (current + TABS.length - 1) % TABS.length,
    Home: 0,
    End: TABS.length - 1,
  }[event.key];
  if (next === undefined) return;
  event.preventDefault();
  selectTab(TABS[next], true);
});

// --- pickers: the models from /v1/models, the languages each one knows ---

const languageNames = (() => {
  try {
    return new Intl.DisplayNames([navigator.language, "en"], { type: "language" });
  } catch {
    return null;
  }
})();

function languageName(code) {
  try {
    const name = languageNames && languageNames.of(code);
    return name && name !== code ? `${name} (${code})` : code;
  } catch {
    return code;
  }
}

function fillPickers(list) {
  models = list;
  const select = $("model");
  const previous = select.value;
  const names = list.map((m) => m.id);
  if (names.join("\n") !== [...select.options].map((o) => o.value).join("\n")) {
    select.replaceChildren(
      ...list.map((m) => new Option(m.default ? `${m.id} (default)` : m.id, m.id)),
    );
  }
  const fallback = (list.find((m) => m.default) || list[0] || {}).id;
  select.value = names.includes(previous) ? previous : fallback;
  fillLanguages();
}

function fillLanguages() {
  const select = $("language");
  const model = models.find((m) => m.id === $("model").value);
  const languages = (model && model.languages) || [];
  const previous = select.value;
  const options = languages.length === 1 ? [] : [new Option("Detect", "")];
  const sorted = [...languages].map((code) => [languageName(code), code]).sort((a, b) => a[0].localeCompare(b[0]));
  options.push(...sorted.map(([label, code]) => new Option(label, code)));
  if (options.map((o) => o.value).join() !== [...select.options].map((o) => o.value).join()) {
    select.replaceChildren(...options);
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

$("model").addEventListener("change", fillLanguages);

window.addEventListener("hashchange", () => {
  const wanted = location.hash.slice(1);
  if (views && TABS.includes(wanted)) selectTab(wanted);
});

// --- the server going away and coming back ---

function showBanner(message) {
  $("banner").textContent = message;
  $("banner").hidden = false;
}

connection.addEventListener("change", (event) => {
  if (event.detail) $("banner").hidden = true;
  else showBanner(new Unreachable().message);
});

boot();
