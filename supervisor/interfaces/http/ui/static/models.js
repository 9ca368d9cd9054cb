// The models dashboard: /health and /v1/models every 2 s while the view is open, each
// model's TTL counted down every quarter second in between, and load / unload buttons
// (the admin routes: with admin_keys set, the admin key is asked for first).
// Cards are built once and updated in place, so a keyboard user's focus stays put.

import { ApiError, json, keys } from "./api.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
const TICK_MS = 250;

export class ModelsView {
  constructor(auth, onModels) {
    this.auth = auth;
    this.onModels = onModels;
    this.cards = new Map(); // model name -> {root, fields, deadline}
    this.timers = [];
    this.pending = null; // the load/unload waiting for the admin key
    this.refreshing = false;
    $("admin-form").addEventListener("submit", (event) => this.adminKeyGiven(event));
    $("admin-cancel").addEventListener("click", () => {
      this.pending = null;
      $("admin-form").hidden = true;
    });
    document.addEventListener("visibilitychange", () => this.setVisible(this.visible));
  }

  setVisible(visible) {
    this.visible = visible;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    if (!visible || document.hidden) return; // nobody is looking: the server is not polled
    this.refresh();
    this.timers.push(setInterval(() => this.refresh(), REFRESH_MS));
    this.timers.push(setInterval(() => this.tick(), TICK_MS));
  }

  async refresh() {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const [health, list] = await Promise.all([json("/health"), json("/v1/models")]);
      this.onModels(list.data);
      this.render(health, list.data);
    } catch (error) {
      // Unreachable shows in the page's banner; anything else here.
      if (error instanceof ApiError) this.status(error.message, true);
    } finally {
      this.refreshing = false;
    }
  }

  render(health, list) {
    renderOverview(health);
    const now = performance.now() / 1000;
    const seen = new Set();
    for (const model of list) {
      const snapshot = health.models[model.id];
      if (!snapshot) continue;
      seen.add(model.id);
      const card = this.cards.get(model.id) || this.addCard(model.id);
      fillCard(card, model, snapshot, health.default_model);
      card.deadline = snapshot.ttl_remaining === null ? null : now + snapshot.ttl_remaining;
      card.snapshot = snapshot;
    }
    for (const [name, card] of this.cards) {
      if (!seen.has(name)) {
        card.root.remove();
        this.cards.delete(name);
      }
    }
    this.tick();
  }

  /** The TTL column, counted down between refreshes. */
  tick() {
    const now = performance.now() / 1000;
    for (const card of this.cards.values()) {
      if (card.snapshot) card.fields.ttl.textContent = ttlText(card.snapshot, card.deadline, now);
    }
  }

  addCard(name) {
    const root = element("article", "card model");
    root.dataset.model = name;
    const head = element("header");
    const title = element("h3", "", name);
    const state = element("span", "badge");
    const tags = element("span", "tags");
    head.append(title, state, tags);
    const about = element("p", "about muted");
    const list = element("dl");
    const fields = { state, tags, about };
    for (const [key, label] of [
      ["pid", "Worker PID"],
      ["memory", "Memory"],
      ["device", "Runs on"],
      ["requests", "Requests"],
      ["ttl", "Unloads"],
      ["load", "Load time"],
    ]) {
      fields[key] = element("dd");
      fields[key].dataset.field = key;
      list.append(element("dt", "", label), fields[key]);
    }
    fields.error = element("p", "problem");
    const actions = element("div", "actions");
    fields.loadButton = element("button", "", "Load");
    fields.unloadButton = element("button", "", "Unload");
    for (const [button, action] of [
      [fields.loadButton, "load"],
      [fields.unloadButton, "unload"],
    ]) {
      button.type = "button";
      button.dataset.action = action;
      button.addEventListener("click", () => this.act(name, action));
    }
    actions.append(fields.loadButton, fields.unloadButton);
    root.append(head, about, list, fields.error, actions);
    $("model-list").append(root);
    const card = { root, fields, deadline: null, snapshot: null, busy: false };
    this.cards.set(name, card);
    return card;
  }

  async act(name, action) {
    if (this.auth.admin_key && !keys.admin()) {
      this.pending = { name, action };
      $("admin-form").hidden = false;
      $("admin-input").focus();
      return;
    }
    const card = this.cards.get(name);
    card.busy = action;
    fillButtons(card);
    this.status(action === "load" ? `Loading ${name}…` : `Unloading ${name}: its requests finish first…`);
    try {
      const result = await json(`/v1/model/${action}?model=${encodeURIComponent(name)}`, { method: "POST", admin: true });
      this.status(action === "load" ? loadedText(name, result) : unloadedText(name, result));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && this.auth.admin_key) {
        keys.setAdmin("");
        this.pending = { name, action };
        $("admin-form").hidden = false;
        $("admin-input").focus();
        this.status("That admin key was not accepted: enter one of the server's admin_keys.", true);
      } else {
        this.status(error.message, true);
      }
    } finally {
      card.busy = false;
      fillButtons(card);
      this.refresh();
    }
  }

  adminKeyGiven(event) {
    event.preventDefault();
    const key = $("admin-input").value.trim();
    if (!key) return;
    keys.setAdmin(key);
    $("admin-input").value = "";
    $("admin-form").hidden = true;
    const pending = this.pending;
    this.pending = null;
    if (pending) {
      this.act(pending.name, pending.action);
      this.cards.get(pending.name).fields[`${pending.action}Button`].focus();
    }
  }

  status(text, problem = false) {
    $("models-status").textContent = text;
    $("models-status").classList.toggle("problem", problem);
  }
}

function fillCard(card, model, s, defaultModel) {
  const f = card.fields;
  f.state.textContent = s.retiring ? `${s.state}, retiring` : s.state;
  f.state.className = `badge state-${s.state}`;
  const tags = [];
  if (model.id === defaultModel) tags.push("default");
  tags.push(...model.aliases.map((alias) => `alias ${alias}`));
  f.tags.textContent = tags.join(" · ");
  f.about.textContent = [model.description, `${model.backend}, ${model.source}`].filter(Boolean).join(" — ");
  f.pid.textContent = s.pid ?? "—";
  const memory = [];
  if (s.rss_mb !== null) memory.push(`${mb(s.rss_mb)} RAM`);
  if (s.vram_mb !== null && s.vram_mb !== undefined) memory.push(`${mb(s.vram_mb)} VRAM`);
  if (!memory.length && s.memory_mb) memory.push(`about ${mb(s.memory_mb)} when loaded`);
  f.memory.textContent = memory.join(" · ") || "—";
  f.device.textContent = s.device
    ? [s.device, s.compute_type, s.concurrency ? `${s.concurrency} lane${s.concurrency > 1 ? "s" : ""}` : ""]
        .filter(Boolean)
        .join(", ")
    : "—";
  f.requests.textContent = `${s.requests} served · ${s.in_flight} in flight · ${s.queued} queued`;
  f.load.textContent = s.load_seconds !== null ? `${s.load_seconds.toFixed(1)} s` : "—";
  const error = s.last_error ? `Last error: ${s.last_error}${s.retry_in ? ` (next try in ${Math.round(s.retry_in)} s)` : ""}` : "";
  f.error.textContent = error;
  f.error.hidden = !error;
  fillButtons(card, s);
}

function fillButtons(card, snapshot = card.snapshot) {
  const f = card.fields;
  const state = snapshot ? snapshot.state : "unloaded";
  f.loadButton.textContent = card.busy === "load" ? "Loading…" : "Load";
  f.unloadButton.textContent = card.busy === "unload" ? "Unloading…" : "Unload";
  f.loadButton.disabled = Boolean(card.busy) || !["unloaded", "failed"].includes(state);
  f.unloadButton.disabled = Boolean(card.busy) || !["ready", "starting", "failed"].includes(state);
}

function ttlText(s, deadline, now) {
  if (s.ttl < 0) return "never (ttl -1)";
  if (s.ttl === 0) return "after each request";
  if (s.state !== "ready") return `after ${duration(s.ttl)} idle`;
  if (deadline === null) return s.in_flight ? "not while busy" : `after ${duration(s.ttl)} idle`;
  const left = deadline - now;
  return left > 0 ? `in ${clock(left)}` : "now";
}

function renderOverview(h) {
  const c = h.capacity;
  const spares = Object.entries(h.spare_pids || {});
  const rows = [
    ["Default model", h.default_model],
    [
      "Loaded",
      `${c.loaded.length ? c.loaded.join(", ") : "none"}${c.max_loaded_models ? ` (at most ${c.max_loaded_models})` : ""}`,
    ],
    ["Memory", `${mb(c.memory_mb)}${c.memory_budget_mb ? ` of ${mb(c.memory_budget_mb)} budget` : " (no budget set)"}`],
    ["Warm spare", spares.length ? spares.map(([backend, pid]) => `PID ${pid} (${backend})`).join(", ") : "none"],
    ["Devices", devicesText(h.devices)],
  ];
  $("overview").replaceChildren(
    ...rows.flatMap(([label, value]) => {
      const box = element("div");
      box.append(element("dt", "", label), element("dd", "", value));
      return [box];
    }),
  );
}

function devicesText(devices) {
  if (!devices) return "—";
  const parts = [`CPU × ${devices.cpu ? devices.cpu.count : "?"}`];
  for (const gpu of devices.cuda || []) parts.push(`${gpu.name} (${mb(gpu.memory_used_mb)} of ${mb(gpu.memory_total_mb)})`);
  if (devices.mps) parts.push("Apple MPS");
  return parts.join(" · ");
}

function loadedText(name, r) {
  return `${name} is ready: worker PID ${r.pid}${r.load_seconds !== null ? `, loaded in ${r.load_seconds.toFixed(1)} s` : ""}.`;
}

function unloadedText(name, r) {
  const report = r.unloaded[0];
  if (!report) return `${name} was not loaded.`;
  const freed = report.freed_rss_mb ? `, ${mb(report.freed_rss_mb)} freed` : "";
  return `${name}: worker PID ${report.pid} ended (${report.ended_by})${freed}.`;
}

function element(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function mb(value) {
  return value >= 1024 ? `${(value / 1024).toFixed(1)} GB` : `${Math.round(value)} MB`;
}

function duration(seconds) {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function clock(seconds) {
  const total = Math.ceil(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}
