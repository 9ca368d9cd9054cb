// A file: dropped or picked, sent to /v1/audio/transcriptions with stream=true, its
// transcript shown segment by segment as the server's events arrive; then copy, or download
// as txt, srt or vtt.

import { ApiError, copy, request, save } from "./api.js";

const $ = (id) => document.getElementById(id);

export class FileView {
  constructor(choice) {
    this.choice = choice;
    this.job = null; // the file last sent: {file, model, language, text, segments (their times, as streamed), abort}
    const input = $("file-input");
    input.addEventListener("change", () => {
      if (input.files.length) this.transcribe(input.files[0]);
      input.value = ""; // choosing the same file again starts again
    });
    const drop = $("drop");
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      const file = event.dataTransfer.files[0];
      if (file) this.transcribe(file);
    });
    $("file-cancel").addEventListener("click", () => this.job && this.job.abort.abort());
    $("file-copy").addEventListener("click", async () => {
      const copied = await copy(this.job.text);
      this.status(copied ? "Copied." : "The browser would not copy: select the text instead.");
    });
    for (const button of document.querySelectorAll("button.download")) {
      button.addEventListener("click", () => this.download(button.dataset.format));
    }
  }

  async transcribe(file) {
    if (this.job) this.job.abort.abort();
    const { model, language } = this.choice();
    const job = { file, model, language, text: "", segments: [], abort: new AbortController() };
    this.job = job;
    this.ready(false);
    $("file-text").replaceChildren();
    $("file-cancel").hidden = false;
    this.status(`Sending ${file.name} (${size(file.size)})…`);
    const started = performance.now();
    try {
      const response = await request("/v1/audio/transcriptions", {
        method: "POST",
        // verbose_json: the stream also carries each segment's times (transcript.text.segment),
        // so subtitles need no second transcription.
        body: form(job, { stream: "true", response_format: "verbose_json" }),
        signal: job.abort.signal,
      });
      this.status(`Transcribing ${file.name} with ${response.headers.get("X-ASR-Model") || model}…`);
      for await (const event of serverEvents(response.body)) {
        if (event.error) throw new ApiError(500, event.error.message, event.error.code);
        if (event.type === "transcript.text.segment") job.segments.push(event);
        if (event.type === "transcript.text.delta") this.append(event.delta);
        if (event.type === "transcript.text.done") job.text = event.text.trim();
      }
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const count = job.text ? job.text.split(/\s+/).length : 0;
      this.status(count ? `Done: ${count} words in ${seconds} s.` : `Done in ${seconds} s: no speech was found.`);
      this.ready(Boolean(job.text));
    } catch (error) {
      if (this.job !== job) return; // a newer file took over
      this.status(error.name === "AbortError" ? "Stopped." : error.message, error.name !== "AbortError");
    } finally {
      if (this.job === job) $("file-cancel").hidden = true;
    }
  }

  append(delta) {
    const span = document.createElement("span");
    span.className = "segment";
    span.textContent = delta;
    $("file-text").append(span);
  }

  async download(format) {
    const job = this.job;
    const base = job.file.name.replace(/\.[^.]+$/, "") || "transcript";
    if (format === "txt") return save(`${base}.txt`, `${job.text}\n`, "text/plain");
    const segments = job.segments;
    if (format === "srt") save(`${base}.srt`, srt(segments), "application/x-subrip");
    else save(`${base}.vtt`, vtt(segments), "text/vtt");
    this.status(`Saved ${base}.${format}.`);
  }

  ready(on) {
    $("file-copy").disabled = !on;
    for (const button of document.querySelectorAll("button.download")) button.disabled = !on;
  }

  status(text, problem = false) {
    $("file-status").textContent = text;
    $("file-status").classList.toggle("problem", problem);
  }
}

function form(job, fields) {
  const data = new FormData();
  data.append("file", job.file);
  if (job.model) data.append("model", job.model);
  if (job.language) data.append("language", job.language);
  for (const [name, value] of Object.entries(fields)) data.append(name, value);
  return data;
}

/** The `data:` payloads of a Server-Sent Events body, parsed as JSON, as they arrive. */
async function* serverEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

// Subtitles, cue for cue what the server's own response_format=srt / vtt would give.

function stamp(seconds, separator) {
  let ms = Math.max(0, Math.round(seconds * 1000));
  const hours = Math.floor(ms / 3_600_000);
  ms %= 3_600_000;
  const minutes = Math.floor(ms / 60_000);
  ms %= 60_000;
  const secs = Math.floor(ms / 1000);
  ms %= 1000;
  const two = (n) => String(n).padStart(2, "0");
  return `${two(hours)}:${two(minutes)}:${two(secs)}${separator}${String(ms).padStart(3, "0")}`;
}

export function srt(segments) {
  return segments
    .map((s, i) => `${i + 1}\n${stamp(s.start, ",")} --> ${stamp(s.end, ",")}\n${s.text.trim()}\n`)
    .join("\n");
}

export function vtt(segments) {
  return `WEBVTT\n\n${segments.map((s) => `${stamp(s.start, ".")} --> ${stamp(s.end, ".")}\n${s.text.trim()}\n`).join("\n")}`;
}

function size(bytes) {
  if (bytes < 1_000_000) return `${Math.max(1, Math.round(bytes / 1000))} kB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}
