// Live dictation: the microphone through an AudioWorklet, 16-bit PCM over the live WebSocket
// (`/v1/audio/transcriptions/stream`, docs/live.md); partials shown as they come (settled
// words apart from those that may still change), each final appended as a paragraph with
// how long after the end of speech it arrived.

import { Unreachable, copy, keys } from "./api.js";

const $ = (id) => document.getElementById(id);
const CHUNK_SECONDS = 0.1; // one WebSocket frame
const END_WAIT_MS = 15_000; // after "end": how long the last final may take before we hang up
const EARLY_SECONDS = 25; // audio held while the model loads (the server holds at most 30 s ahead)

/** Why the microphone cannot be had at all here, or null when it can. */
function captureBlocked() {
  if (!window.isSecureContext) {
    return (
      `Browsers give the microphone only to secure pages, and ${location.origin} is not one. ` +
      `Open the page on the server's own machine (http://127.0.0.1:${location.port || 80}/), ` +
      "or serve it over HTTPS: ssl_certfile and ssl_keyfile in asr.toml, or a reverse proxy " +
      "(the README's “Web page” section shows both). Files and models work here as they are."
    );
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
    return "This browser cannot capture audio for the page (no getUserMedia or AudioWorklet). Try a current Chrome, Edge, Firefox or Safari.";
  }
  return null;
}

function micMessage(error) {
  switch (error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The microphone was refused. Allow it for this site (the icon at the left of the address bar), then press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one, then press Start again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be opened: another program may be using it.";
    default:
      return `The microphone could not be used: ${error.message}`;
  }
}

const HINTS = {
  too_many_sessions: "Too many live sessions are open on the server; try again in a moment.",
  invalid_api_key: "The server did not accept this tab's key for live audio. Use “Forget key” and enter a current one.",
};

export class LiveView {
  constructor(choice) {
    this.choice = choice;
    this.session = null;
    this.current = $("current");
    $("mic").addEventListener("click", () => (this.session ? this.session.stop() : this.start()));
    $("live-copy").addEventListener("click", async () => {
      this.status((await copy(this.text())) ? "Copied." : "The browser would not copy: select the text instead.");
    });
    $("live-clear").addEventListener("click", () => {
      for (const p of $("live-text").querySelectorAll("p.final")) p.remove();
      this.actions();
    });
    const blocked = captureBlocked();
    if (blocked) {
      $("live-note").textContent = blocked;
      $("live-note").hidden = false;
      $("mic").disabled = true;
      this.status("");
    }
  }

  async start() {
    const blocked = captureBlocked();
    if (blocked) return this.status(blocked, true);
    this.button("starting");
    this.status("Asking for the microphone…");
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (error) {
      this.button("idle");
      return this.status(micMessage(error), true);
    }
    this.session = new Session(this, media);
    try {
      await this.session.open(this.choice());
      this.button("listening"); // a model that takes long to load can be given up on
    } catch (error) {
      this.session.release();
      this.session = null;
      this.button("idle");
      this.status(error instanceof Unreachable ? error.message : `The audio could not be set up: ${error.message}`, true);
    }
  }

  // --- what a session tells the view ---

  ready(model) {
    this.status(`Listening with ${model}. Speak; press the button again to stop.`);
  }

  partial(event) {
    const settled = event.text.startsWith(event.committed) ? event.committed : "";
    this.current.querySelector(".committed").textContent = settled;
    this.current.querySelector(".tentative").textContent = event.text.slice(settled.length);
    this.scroll();
  }

  final(event, latency) {
    this.clearCurrent();
    const text = event.text.trim();
    if (!text) return;
    const paragraph = document.createElement("p");
    paragraph.className = "final";
    paragraph.textContent = `${text} `;
    if (latency !== null) {
      const small = document.createElement("small");
      small.className = "latency";
      small.title = "seconds from the end of speech to this final";
      small.textContent = `${latency.toFixed(2)} s`;
      paragraph.append(small);
    }
    this.current.before(paragraph);
    this.actions();
    this.scroll();
  }

  hearing(on) {
    $("mic").classList.toggle("hearing", on);
  }

  level(value) {
    $("level").style.width = `${Math.round(Math.min(1, value * 4) * 100)}%`;
  }

  ended(session, close) {
    this.session = null;
    this.clearCurrent();
    this.button("idle");
    this.hearing(false);
    this.level(0);
    if (session.error) {
      const hint = HINTS[session.error.code];
      this.status(hint || `The server ended the session: ${session.error.message}`, true);
    } else if (!session.isReady && !session.stopping) {
      this.status(
        `Cannot reach the server at ${location.host} for live audio: it may be stopped or restarting` +
          " (a proxy in front of it must pass WebSockets).",
        true,
      );
    } else if (close.code !== 1000 && !session.stopping) {
      this.status("The connection to the server was lost. Press Start to go on.", true);
    } else {
      this.status("Stopped. Press the button to dictate again.");
    }
  }

  // --- helpers ---

  button(mode) {
    const mic = $("mic");
    mic.dataset.mode = mode;
    mic.setAttribute("aria-pressed", String(mode === "listening"));
    mic.disabled = mode === "starting" || mode === "finishing";
    $("mic-label").textContent = {
      idle: "Start dictation",
      starting: "Starting…",
      listening: "Stop",
      finishing: "Finishing…",
    }[mode];
  }

  status(text, problem = false) {
    $("live-status").textContent = text;
    $("live-status").classList.toggle("problem", problem);
  }

  clearCurrent() {
    for (const span of this.current.children) span.textContent = "";
  }

  text() {
    return [...$("live-text").querySelectorAll("p.final")]
      .map((p) => p.firstChild.textContent.trim())
      .join("\n\n");
  }

  actions() {
    const empty = !$("live-text").querySelector("p.final");
    $("live-copy").disabled = empty;
    $("live-clear").disabled = empty;
  }

  scroll() {
    const box = $("live-text");
    box.scrollTop = box.scrollHeight;
  }
}

/** One connection: the microphone, its audio graph and the WebSocket, and what they did. */
class Session {
  constructor(view, media) {
    this.view = view;
    this.media = media;
    this.isReady = false;
    this.stopping = false;
    this.error = null; // the server's `error` message, if it sent one
    this.captured = 0; // samples taken from the microphone
    this.marks = []; // [samples captured in all, when (ms)]: when each piece of audio was heard
    this.early = []; // chunks heard before the server was ready for them
    this.dropped = 0; // samples heard but never sent (the oldest, after EARLY_SECONDS waiting)
  }

  async open({ model, language }) {
    this.context = new AudioContext({ sampleRate: 16000 });
    try {
      this.source = this.context.createMediaStreamSource(this.media);
    } catch {
      // Some browsers cannot resample a microphone into a 16 kHz context: take its own rate
      // and let the server resample (it takes 8-48 kHz).
      await this.context.close();
      this.context = new AudioContext();
      this.source = this.context.createMediaStreamSource(this.media);
    }
    try {
      await this.context.audioWorklet.addModule("/ui/pcm-worklet.js");
    } catch {
      throw new Unreachable(); // it comes from the server, which did not answer
    }
    this.rate = this.context.sampleRate;
    this.node = new AudioWorkletNode(this.context, "pcm16", {
      processorOptions: { chunk: Math.round(this.rate * CHUNK_SECONDS) },
    });
    this.node.port.onmessage = (message) => this.heard(message.data);
    // Audio flows from now: what is said while the model loads is held, then sent.
    this.source.connect(this.node);
    this.node.connect(this.context.destination); // silent: it only makes the graph pull the node

    const query = new URLSearchParams({ sample_rate: String(this.rate) });
    if (model) query.set("model", model);
    if (language) query.set("language", language);
    if (keys.api()) query.set("api_key", keys.api()); // a browser cannot set Authorization on a WebSocket
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${scheme}://${location.host}/v1/audio/transcriptions/stream?${query}`);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (message) => this.receive(JSON.parse(message.data));
    this.ws.onclose = (close) => this.closed(close);
    this.view.status(`Connecting${model ? ` to ${model} (it loads if it is not loaded yet)` : ""}; you can speak already.`);
  }

  receive(event) {
    switch (event.type) {
      case "ready":
        if (!this.isReady) {
          this.isReady = true;
          for (const chunk of this.early.splice(0)) this.ws.send(chunk);
          if (!this.stopping) this.view.ready(event.model);
        }
        break;
      case "partial":
        this.view.partial(event);
        break;
      case "final":
        this.view.final(event, this.latency(event.end));
        break;
      case "speech_started":
        this.view.hearing(true);
        break;
      case "speech_stopped":
        this.view.hearing(false);
        break;
      case "error":
        this.error = event;
        break;
    }
  }

  heard(buffer) {
    if (this.stopping) return;
    const samples = new Int16Array(buffer);
    let sum = 0;
    for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
    this.view.level(Math.sqrt(sum / samples.length) / 32768);
    this.captured += samples.length;
    this.marks.push([this.captured, performance.now()]);
    if (this.isReady && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(buffer);
    } else if (!this.isReady) {
      this.early.push(buffer);
      if (this.early.length > EARLY_SECONDS / CHUNK_SECONDS) this.dropped += this.early.shift().byteLength / 2;
    }
  }

  /** Seconds from when the audio at `end` (seconds of session audio) was heard, to now. */
  latency(end) {
    const target = end * this.rate + this.dropped; // the server's clock starts at the first sample sent
    while (this.marks.length > 1 && this.marks[1][0] < target) this.marks.shift();
    const mark = this.marks.find(([samples]) => samples >= target);
    return mark ? (performance.now() - mark[1]) / 1000 : null;
  }

  stop() {
    this.stopping = true;
    this.release(); // the microphone is off at once; the server still owes the last final
    if (this.ws.readyState === WebSocket.OPEN) {
      for (const chunk of this.early.splice(0)) this.ws.send(chunk); // the server reads them in order
      this.ws.send(JSON.stringify({ type: "end" }));
      this.view.button("finishing");
      this.view.status("Finishing the last sentence…");
      this.timer = setTimeout(() => this.ws.close(), END_WAIT_MS);
    } else {
      this.ws.close();
    }
  }

  closed(close) {
    clearTimeout(this.timer);
    this.release();
    this.view.ended(this, close);
  }

  release() {
    if (this.released) return;
    this.released = true;
    for (const track of this.media.getTracks()) track.stop();
    if (this.source) this.source.disconnect();
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.disconnect();
    }
    if (this.context) this.context.close();
  }
}
