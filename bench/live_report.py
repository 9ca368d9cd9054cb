"""The live part's goals, table (markdown, printed and saved), JSON and chart."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from bench.report import Row, p50, percentile, write_json

# The goals the brief set for live transcription, in one place so the table and the chart agree.
END_SILENCE_S = 0.5  # the server's end_silence_ms, which every final waits for
FINAL_P50_OVER_SILENCE = 0.150  # last voiced sample -> final: p50 <= silence + 150 ms
FINAL_P95_OVER_SILENCE = 0.400  # ... and p95 <= silence + 400 ms
FIRST_PARTIAL_MAX_S = 1.0  # speech start -> first partial, p50
PARTIALS_PER_S_MIN = 1.0  # while speech continues, p50 over utterances
CONTRADICTED_MAX = 0.01  # committed words the final contradicts
STREAMING_WER_MAX_RATIO = 1.1  # finals joined vs the same clip through POST
WYOMING_MAX_RATIO = 0.5  # audio-stop -> transcript p50, asr-supervisor / wyoming-faster-whisper
CAPACITY_MIN_SESSIONS = 4  # concurrent live sessions one worker sustains in real time
CAPACITY_LATENCY_S = 2.0


def _ms(values: list[float]) -> str:
    if not values:
        return "—"
    return f"p50 {p50(values) * 1000:.0f} ms · p95 {percentile(values, 95) * 1000:.0f} ms"


def _pooled_wer(results: list[dict[str, Any]]) -> float:
    words = sum(r["reference_words"] for r in results)
    return sum(r["word_edits"] for r in results) / words if words else math.nan


def build_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    ws = r["websocket"]
    latency = [x for s in ws for x in s["final_latency"]]
    finals = sum(s["finals"] for s in ws)
    sentences = sum(s["sentences"] for s in ws)
    lat50, lat95 = p50(latency), percentile(latency, 95)
    goal50, goal95 = END_SILENCE_S + FINAL_P50_OVER_SILENCE, END_SILENCE_S + FINAL_P95_OVER_SILENCE
    rows.append(
        Row(
            f"WebSocket: last voiced sample → final ({len(latency)} utterances, {sentences} sentences)",
            _ms(latency),
            f"end_silence_ms {END_SILENCE_S * 1000:.0f}",
            lat50 / END_SILENCE_S if latency else None,
            f"p50 ≤ {goal50 * 1000:.0f} ms, p95 ≤ {goal95 * 1000:.0f} ms",
            bool(latency) and lat50 <= goal50 and lat95 <= goal95,
        )
    )
    first = [x for s in ws for x in s["first_partial"]]
    no_partial = sum(s["no_partial"] for s in ws)
    rows.append(
        Row(
            "WebSocket: speech start → first partial",
            _ms(first),
            f"{no_partial} of {finals} utterances had no partial before their final" if no_partial else "—",
            None,
            f"p50 ≤ {FIRST_PARTIAL_MAX_S:.1f} s",
            bool(first) and p50(first) <= FIRST_PARTIAL_MAX_S,
        )
    )
    rate = [x for s in ws for x in s["partials_per_s"]]
    rows.append(
        Row(
            "WebSocket: partials per second of speech (per utterance)",
            f"p50 {p50(rate):.2f}/s · p5 {percentile(rate, 5):.2f}/s" if rate else "—",
            "—",
            None,
            f"p50 ≥ {PARTIALS_PER_S_MIN:.0f}/s",
            bool(rate) and p50(rate) >= PARTIALS_PER_S_MIN,
        )
    )
    committed = sum(s["committed_words"] for s in ws)
    bad = sum(s["contradicted_words"] for s in ws)
    retracted = sum(s["retracted_words"] for s in ws)
    share = bad / committed if committed else math.nan
    rows.append(
        Row(
            "WebSocket: committed words the final contradicts",
            f"{bad} of {committed} ({share:.1%})" if committed else "no committed words",
            f"{retracted} committed words retracted by a later partial",
            None,
            f"≤ {CONTRADICTED_MAX:.0%}",
            bool(committed) and share <= CONTRADICTED_MAX,
        )
    )
    streaming, offline = _pooled_wer(ws), _pooled_wer(r["offline"])
    by_sentence = _pooled_wer(
        [
            {"word_edits": o["by_sentence_word_edits"], "reference_words": o["reference_words"]}
            for o in r["offline"]
            if "by_sentence_word_edits" in o
        ]
    )
    ratio = streaming / offline if offline else (1.0 if streaming == 0 else math.inf)
    rows.append(
        Row(
            f"WER: finals joined vs POST /v1/audio/transcriptions ({sum(s['reference_words'] for s in ws)} words)",
            f"streaming {streaming:.1%}",
            f"offline {offline:.1%}" + (f" (one request per sentence: {by_sentence:.1%})" if by_sentence else ""),
            ratio,
            f"≤ {STREAMING_WER_MAX_RATIO}×",
            ratio <= STREAMING_WER_MAX_RATIO,
        )
    )
    wy = r["wyoming"]
    asr_stop = [u["stop_to_transcript"] for u in wy["asr"]]
    wfw_stop = [u["stop_to_transcript"] for u in wy["wfw"]]
    ratio = p50(asr_stop) / p50(wfw_stop)
    rows.append(
        Row(
            f"Wyoming audio-stop → transcript ({len(asr_stop)} sentences, {wy['trailing_silence_s']} s trailing silence)",
            _ms(asr_stop),
            f"wyoming-faster-whisper {_ms(wfw_stop)}",
            ratio,
            f"p50 ≤ {WYOMING_MAX_RATIO}×",
            ratio <= WYOMING_MAX_RATIO,
        )
    )
    asr_voiced = [u["voiced_to_transcript"] for u in wy["asr"]]
    wfw_voiced = [u["voiced_to_transcript"] for u in wy["wfw"]]
    rows.append(
        Row(
            "Wyoming last voiced sample → transcript",
            _ms(asr_voiced),
            f"wyoming-faster-whisper {_ms(wfw_voiced)}",
            p50(asr_voiced) / p50(wfw_voiced),
            "—",
            None,
        )
    )
    asr_wer, wfw_wer = _pooled_wer(wy["asr"]), _pooled_wer(wy["wfw"])
    rows.append(
        Row(
            "Wyoming WER (the same sentences)",
            f"{asr_wer:.1%}",
            f"wyoming-faster-whisper {wfw_wer:.1%}",
            None,
            "≤ wyoming-faster-whisper's",
            asr_wer <= wfw_wer,
        )
    )
    held = 0
    for level in r["capacity"]:
        lat = level["final_latency"]
        extra = []
        if level["missed_sentences"]:
            extra.append(f"{level['missed_sentences']} sentences without a final")
        if level["errors"]:
            extra.append(f"{len(level['errors'])} sessions failed")
        rows.append(
            Row(
                f"Capacity: {level['sessions']} live session{'s' if level['sessions'] > 1 else ''}"
                f" ({level['audio_seconds']:.0f} audio-s, {len(lat)} finals)",
                f"final latency {_ms(lat)}"
                + (f" · max {max(lat) * 1000:.0f} ms" if lat else "")
                + (f" · {p50(level['partials_per_s']):.2f} partials/s" if level["partials_per_s"] else ""),
                "; ".join(extra) or "—",
                None,
                f"p95 ≤ {CAPACITY_LATENCY_S:.0f} s",
                level["holds"],
            )
        )
        if level["holds"]:
            held = level["sessions"]
    tried = [level["sessions"] for level in r["capacity"]]
    rows.append(
        Row(
            f"Live sessions one worker sustains in real time ({os.cpu_count()} cores)",
            f"{held}",
            f"tried {', '.join(map(str, tried))}",
            None,
            f"≥ {CAPACITY_MIN_SESSIONS}",
            held >= CAPACITY_MIN_SESSIONS,
        )
    )
    return rows


def _notes(r: dict[str, Any]) -> list[str]:
    meta, ws, wy = r["meta"], r["websocket"], r["wyoming"]
    busy = meta["foreign_cpu_cores"] + meta["steal_cpu_cores"] > 0.1
    notes = [
        ("WARNING: other" if busy else "Other")
        + f" processes used {meta['foreign_cpu_cores']:.2f} cores on average during the run (of {meta['cores']}), "
        f"the hypervisor stole {meta['steal_cpu_cores']:.2f}"
        + ("; timings are disturbed, run it again on a quiet machine." if busy else "."),
        f"Audio: {len(meta['clips'])} espeak-ng clips ({', '.join(meta['clips'])}; "
        f"{sum(c['seconds'] for c in meta['clips'].values()):.0f} s, "
        f"{sum(c['sentences'] for c in meta['clips'].values())} sentences), 16 kHz mono, sent in real time: "
        f"WebSocket frames of {meta['live_frame_ms']} ms, Wyoming chunks of {wy['chunk_samples']} samples, "
        "each sent once its last sample has been spoken. Voiced ends come from the audio (10 ms frames above -45 dBFS).",
    ]
    vad = [x for s in ws for x in s["vad_end_offset"]]
    stopped = [x for s in ws for x in s["stopped_latency"]]
    to_final = [x for s in ws for x in s["stopped_to_final"]]
    if stopped:
        notes.append(
            "Where the WebSocket final latency goes: last voiced sample → `speech_stopped` "
            f"{_ms(stopped)}; `speech_stopped` → `final` {_ms(to_final)}; the final's `end` is "
            f"{_ms(vad).replace('ms', 'ms of audio')} after the voiced end."
        )
    started_lag = [x for s in ws for x in s["started_lag"]]
    stopped_lag = [x for s in ws for x in s["stopped_lag"]]
    if started_lag:
        notes.append(
            "How far behind the audio the worker's VAD runs (an event's arrival minus the moment the audio it "
            f"names was spoken): `speech_started` {_ms(started_lag)}, `speech_stopped` {_ms(stopped_lag)} "
            f"(of which {END_SILENCE_S * 1000:.0f} ms is end_silence_ms)."
        )
    for s in ws:
        if s["missed_sentences"] or s["error"] or s["finals"] != s["sentences"]:
            notes.append(
                f"WebSocket {s['label']}: {s['finals']} finals for {s['sentences']} sentences"
                + (f", sentences without a final: {s['missed_sentences']}" if s["missed_sentences"] else "")
                + (f", error: {s['error']}" if s["error"] else "")
                + " (finals may merge sentences whose pause is shorter than end_silence_ms)."
            )
    contradictions = [c for s in ws for c in s["contradictions"]]
    for c in contradictions[:5]:
        notes.append(f"Contradicted: committed {c['committed']!r}, final {c['final']!r}.")
    chunks = [u["chunks_before_stop"] for u in wy["asr"]]
    notes.append(
        f"Wyoming: asr-supervisor sent transcript-chunk events before audio-stop in {sum(1 for c in chunks if c)} "
        f"of {len(chunks)} utterances; the two servers alternate sentence by sentence, a fresh connection each."
    )
    for s, o in zip(ws, r["offline"]):
        notes.append(
            f"Text {s['label']}: streaming {s['text']!r}; offline {o['text']!r}"
            + (f"; offline by sentence {o['by_sentence_text']!r}." if "by_sentence_text" in o else ".")
        )
    notes.append(
        "Capacity: a level holds when every session ends normally, every sentence gets a final and the finals' "
        f"p95 latency is ≤ {CAPACITY_LATENCY_S:.0f} s (partials carry no audio position on the wire, so the "
        "final latency is the lag measure); 1 session is the WebSocket run above, the others stream different "
        "excerpts of the clips, started 0.37 s apart; the levels stop early only at a hopeless one (p95 over 8 s, "
        "or a session failed)."
    )
    notes.append(
        "Processes left behind: "
        + (", ".join(map(str, meta["leftover_pids"])) + " (killed)" if meta["leftover_pids"] else "none")
        + "."
    )
    notes.append(f"Run time: {meta['seconds']:.0f} s.")
    return notes


def markdown(rows: list[Row], r: dict[str, Any]) -> str:
    meta = r["meta"]
    lines = [
        f"# asr-supervisor live transcription benchmark ({meta['mode']})",
        "",
        f"{meta['date']} · {meta['cpu']} · {meta['cores']} cores · model tiny.en (bundled), CPU int8, beam 5, "
        f"cpu_threads {meta['cpu_threads']} · end_silence_ms {meta['end_silence_ms']} · commit {meta['commit']}",
        "",
        "| measurement | asr-supervisor | compared with | ratio | goal | result |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = "—" if row.ratio is None or math.isnan(row.ratio) else f"{row.ratio:.2f}×"
        lines.append(f"| {row.measurement} | {row.measured} | {row.reference} | {ratio} | {row.goal} | {row.result} |")
    missed = sum(1 for row in rows if row.ok is False)
    gated = sum(1 for row in rows if row.ok is not None)
    lines += ["", f"Goals met: {gated - missed} of {gated}.", ""]
    lines += [f"- {note}" for note in _notes(r)]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines += [f"- Versions: {versions}.", f"- Repetitions: {meta['live_reps']}.", ""]
    return "\n".join(lines)


def chart(path: Path, r: dict[str, Any]) -> None:
    """Four panels: WebSocket latencies, Wyoming, capacity, WER; goals drawn where they apply."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(13, 9))
    ws = r["websocket"]

    def cdf(ax: Any, values: list[float], label: str, style: str) -> None:
        if values:
            xs = sorted(values)
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], style, label=label, drawstyle="steps-post")

    cdf(ax1, [x for s in ws for x in s["final_latency"]], "last voiced sample → final", "C0-")
    cdf(ax1, [x for s in ws for x in s["first_partial"]], "speech start → first partial", "C1-")
    cdf(ax1, [x for s in ws for x in s["stopped_latency"]], "last voiced sample → speech_stopped", "C2:")
    ax1.axvline(END_SILENCE_S, color="grey", ls=":", lw=1, label=f"end_silence {END_SILENCE_S * 1000:.0f} ms")
    ax1.axvline(END_SILENCE_S + FINAL_P50_OVER_SILENCE, color="C0", ls="--", lw=1, label="final goal p50")
    ax1.axvline(END_SILENCE_S + FINAL_P95_OVER_SILENCE, color="C0", ls="-.", lw=1, label="final goal p95")
    ax1.axvline(FIRST_PARTIAL_MAX_S, color="C1", ls="--", lw=1, label="first-partial goal")
    ax1.set_xlabel("seconds")
    ax1.set_ylabel("share of utterances")
    ax1.set_title("WebSocket live, one session, real time (CDF)")
    ax1.legend(fontsize=8, loc="lower right")

    wy = r["wyoming"]
    width = 0.38
    labels = ["audio-stop → transcript", "last voiced sample → transcript"]
    for i, (key, name) in enumerate((("wfw", "wyoming-faster-whisper"), ("asr", "asr-supervisor (live)"))):
        series = [[u["stop_to_transcript"] for u in wy[key]], [u["voiced_to_transcript"] for u in wy[key]]]
        mids = [p50(v) for v in series]
        highs = [percentile(v, 95) for v in series]
        xs = [x + (i - 0.5) * width for x in range(len(labels))]
        ax2.bar(xs, mids, width, label=name)
        ax2.errorbar(xs, mids, yerr=[[0] * 2, [h - m for m, h in zip(mids, highs)]], fmt="none", ecolor="black")
        for x, m in zip(xs, mids):
            ax2.text(x, m, f"{m * 1000:.0f}", ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(range(len(labels)), labels)
    ax2.set_ylabel("seconds (bar p50, whisker p95)")
    ax2.set_title(f"Wyoming, Home Assistant's sequence, {wy['trailing_silence_s']} s trailing silence")
    ax2.legend()

    cap = r["capacity"]
    sessions = [c["sessions"] for c in cap]
    ax3.plot(sessions, [p50(c["final_latency"]) for c in cap], "o-", label="final latency p50")
    ax3.plot(sessions, [percentile(c["final_latency"], 95) for c in cap], "s-", label="final latency p95")
    for c in cap:
        if not c["holds"]:
            ax3.plot([c["sessions"]], [percentile(c["final_latency"], 95)], "rx", markersize=12)
    ax3.axhline(CAPACITY_LATENCY_S, color="red", ls="--", lw=1, label=f"{CAPACITY_LATENCY_S:.0f} s limit")
    ax3.axvline(CAPACITY_MIN_SESSIONS, color="grey", ls=":", lw=1, label=f"goal ≥ {CAPACITY_MIN_SESSIONS} sessions")
    ax3.set_xlabel("concurrent live WebSocket sessions")
    ax3.set_ylabel("seconds")
    levels = list(meta_levels) if (meta_levels := r["meta"].get("live_reps", {}).get("levels")) else sessions
    ax3.set_xticks(levels)
    ax3.set_xlim(0.5, max(levels) + 0.5)
    ax3.set_ylim(bottom=0)
    ax3.set_title("Capacity: one worker, real-time audio")
    ax3.legend(fontsize=8)

    names = [s["label"] for s in ws]
    w4 = 0.27
    xs = list(range(len(names)))
    ax4.bar(
        [x - w4 for x in xs],
        [o["word_edits"] / o["reference_words"] * 100 for o in r["offline"]],
        w4,
        label="offline POST, whole clip",
    )
    ax4.bar(
        xs,
        [o.get("by_sentence_word_edits", math.nan) / o["reference_words"] * 100 for o in r["offline"]],
        w4,
        label="offline POST, one request per sentence",
    )
    ax4.bar(
        [x + w4 for x in xs],
        [s["word_edits"] / s["reference_words"] * 100 for s in ws],
        w4,
        label="streaming (finals joined)",
    )
    ax4.set_xticks(xs, names, fontsize=8)
    ax4.set_ylabel("WER, %")
    ax4.set_title(f"WER per clip (goal: streaming ≤ {STREAMING_WER_MAX_RATIO}× offline, pooled)")
    ax4.legend()

    meta = r["meta"]
    fig.suptitle(
        f"asr-supervisor live transcription ({meta['mode']}) · tiny.en CPU int8 · {meta['cpu_threads']} threads · "
        f"{meta['date']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    """`python -m bench.live_report DIR/live.json`: rewrite live.md and live.png from a run's JSON."""
    import sys

    path = Path(sys.argv[1])
    results = json.loads(path.read_text())
    results.pop("rows", None)
    rows = build_rows(results)
    (path.parent / "live.md").write_text(markdown(rows, results))
    write_json(path, results, rows)
    chart(path.parent / "live.png", results)
    print(markdown(rows, results))
    from bench import page

    page.update(path.parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
