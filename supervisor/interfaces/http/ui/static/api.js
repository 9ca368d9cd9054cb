// The one way the page talks to the server: the user's keys on every request, and every
// failure turned into a sentence a person can act on. Keys live in sessionStorage: they
// last as long as the browser tab, and no other site can read them.

const API_KEY = "asr.apiKey";
const ADMIN_KEY = "asr.adminKey";

export const keys = {
  api: () => sessionStorage.getItem(API_KEY) || "",
  admin: () => sessionStorage.getItem(ADMIN_KEY) || "",
  setApi: (key) => store(API_KEY, key),
  setAdmin: (key) => store(ADMIN_KEY, key),
  forget() {
    sessionStorage.removeItem(API_KEY);
    sessionStorage.removeItem(ADMIN_KEY);
  },
};

function store(name, key) {
  if (key) sessionStorage.setItem(name, key);
  else sessionStorage.removeItem(name);
}

/** The server answered, with an error in OpenAI's shape: `message` is its own words. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** No answer at all: the server is down, restarting, or the network is in the way. */
export class Unreachable extends Error {
  constructor() {
    super(`Cannot reach the server at ${location.host}: it may be stopped or restarting. The page tries again by itself.`);
  }
}

/** Fires "change" with `detail` true (answering) or false (unreachable) when that flips. */
export const connection = new EventTarget();
let reachable = true;

function reached(ok) {
  if (ok === reachable) return;
  reachable = ok;
  connection.dispatchEvent(new CustomEvent("change", { detail: ok }));
}

/**
 * fetch() with the API key (or, for `admin`, the admin key when there is one; `key`
 * overrides both). Resolves to the Response when it is 2xx; rejects with ApiError,
 * Unreachable, or the AbortError of `signal`.
 */
export async function request(path, { method = "GET", body, admin = false, key, signal } = {}) {
  const token = key ?? ((admin && keys.admin()) || keys.api());
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let response;
  try {
    response = await fetch(path, { method, body, headers, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    reached(false);
    throw new Unreachable();
  }
  reached(true);
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function json(path, options) {
  return (await request(path, options)).json();
}

async function errorOf(response) {
  let message = `The server answered ${response.status} ${response.statusText}.`;
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code;
    }
  } catch {
    // not JSON (a proxy's error page): the status line says enough
  }
  return new ApiError(response.status, message, code);
}

/** Offer `text` as a file download named `name`, made in the page (nothing is fetched). */
export function save(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Copy `text`; true when it worked. The clipboard API wants a secure page: else the old way. */
export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }
}
