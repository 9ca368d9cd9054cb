"""Turn the raw measurements into the goal table (markdown, printed and saved), JSON and a chart."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The goals the brief set, in one place so the table and the chart agree.
WARM_HTTP_MAX_RATIO = 1.03  # warm HTTP p50 / in-process p50, every clip length
COLD_MAX_RATIO = 1.15  # first request after unload / in-process load + transcribe
THROUGHPUT_MIN_RATIO = 1.2  # asr-supervisor HTTP at 4 clients / wyoming-faster-whisper at 4 clients
THROUGHPUT_GOAL_CLIENTS = 4
IDLE_RSS_MAX_MB = 60.0  # supervisor alone, before any model load
UNLOAD_RSS_MAX_DELTA_MB = 5.0  # whole service after TTL unload vs before the first load
WYOMING_MAX_RATIO = 1.0  # audio-stop -> transcript, asr-supervisor / wyoming-faster-whisper


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), so p90 of few samples is not just the max."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass
class Row:
    measurement: str
    measured: str  # asr-supervisor's figure
    reference: str  # what it is compared with
    ratio: float | None
    goal: str
    ok: bool | None  # None: informational, no goal
    spread: tuple[float, float] | None = None  # the ratio's lowest and highest round

    @property
    def result(self) -> str:
        return "" if self.ok is None else ("ok" if self.ok else "**MISS**")


def _pp(values: list[float]) -> str:
    return f"p50 {p50(values):.3f} s · p90 {percentile(values, 90):.3f} s"


def _rate(samples: list[dict[str, float]] | None) -> str:
    """Requests/s over the rounds: the median, with the slowest and fastest round in brackets."""
    if not samples:
        return "—"
    rps = [t["requests_per_s"] for t in samples]
    spread = f" ({min(rps):.2f}–{max(rps):.2f})" if len(rps) > 1 else ""
    return f"{p50(rps):.2f} req/s{spread} · {p50([t['audio_s_per_s'] for t in samples]):.1f} audio-s/s"


def _round_ratios(ours: list[dict[str, float]], ref: list[dict[str, float]] | None) -> list[float]:
    """Per round, ours over the reference: both sides of a round ran back to back."""
    return [a["requests_per_s"] / b["requests_per_s"] for a, b in zip(ours, ref or [])]


def _spread(values: list[float]) -> tuple[float, float] | None:
    return (min(values), max(values)) if len(values) > 1 else None


def build_rows(r: dict[str, Any]) -> list[Row]:
    """One row per figure, with its goal and whether it is met."""
    rows: list[Row] = []
    for name, lat in r["latency"].items():
        ratio = p50(lat["http"]) / p50(lat["inprocess"])
        rows.append(
            Row(
                f"Warm HTTP, {name} clip ({lat['audio_seconds']:.1f} s)",
                _pp(lat["http"]),
                f"in-process {_pp(lat['inprocess'])}",
                ratio,
                f"p50 ≤ {WARM_HTTP_MAX_RATIO}×",
                ratio <= WARM_HTTP_MAX_RATIO,
            )
        )
    cold = r["cold"]
    ratio = p50(cold["http"]) / p50(cold["inprocess"])
    rows.append(
        Row(
            f"Cold first request after unload ({cold['clip']} clip)",
            f"p50 {p50(cold['http']):.3f} s",
            f"in-process load + transcribe p50 {p50(cold['inprocess']):.3f} s",
            ratio,
            f"≤ {COLD_MAX_RATIO}×",
            ratio <= COLD_MAX_RATIO,
        )
    )
    tp = r["throughput"]
    for clients, ours in tp["asr_http"].items():
        ratios = _round_ratios(ours, tp["wfw_wyoming"].get(clients))
        tp_ratio = p50(ratios) if ratios else None
        gated = int(clients) == THROUGHPUT_GOAL_CLIENTS
        rows.append(
            Row(
                f"Throughput, {clients} client{'s' if int(clients) > 1 else ''}, {tp['clip']} clip (HTTP)",
                _rate(ours),
                f"wyoming-faster-whisper {_rate(tp['wfw_wyoming'].get(clients))}",
                tp_ratio,
                f"median ≥ {THROUGHPUT_MIN_RATIO}×" if gated else "—",
                (tp_ratio is not None and tp_ratio >= THROUGHPUT_MIN_RATIO) if gated else None,
                _spread(ratios),
            )
        )
    for clients, ours in tp["asr_wyoming"].items():
        ratios = _round_ratios(ours, tp["wfw_wyoming"].get(clients))
        rows.append(
            Row(
                f"Throughput, {clients} clients, {tp['clip']} clip (asr-supervisor via Wyoming)",
                _rate(ours),
                f"wyoming-faster-whisper {_rate(tp['wfw_wyoming'].get(clients))}",
                p50(ratios) if ratios else None,
                "—",
                None,
                _spread(ratios),
            )
        )
    mem = r["memory"]
    rows.append(
        Row(
            "Supervisor RSS idle (before any model load)",
            f"{mem['supervisor_idle_mb']:.1f} MB",
            "—",
            None,
            f"≤ {IDLE_RSS_MAX_MB:.0f} MB",
            mem["supervisor_idle_mb"] <= IDLE_RSS_MAX_MB,
        )
    )
    end = f", {mem['main_worker_end_mb']:.1f} MB after the throughput runs" if "main_worker_end_mb" in mem else ""
    rows.append(
        Row(
            "Worker RSS, model loaded (every lane open)",
            f"{mem['worker_loaded_mb']:.1f} MB{end}",
            f"wyoming-faster-whisper (whole process) {mem['wfw_loaded_mb']:.1f} MB",
            None,
            "—",
            None,
        )
    )
    rows.append(
        Row(
            "Whole-service RSS, model loaded",
            f"{mem['service_loaded_mb']:.1f} MB",
            f"wyoming-faster-whisper {mem['wfw_loaded_mb']:.1f} MB",
            mem["service_loaded_mb"] / mem["wfw_loaded_mb"],
            "—",
            None,
        )
    )
    delta = mem["service_after_unload_mb"] - mem["service_before_load_mb"]
    rows.append(
        Row(
            f"Whole-service RSS after TTL unload (ttl {mem['ttl']} s)",
            f"{mem['service_after_unload_mb']:.1f} MB ({delta:+.1f} MB)",
            f"before first load {mem['service_before_load_mb']:.1f} MB",
            None,
            f"within {UNLOAD_RSS_MAX_DELTA_MB:.0f} MB",
            abs(delta) <= UNLOAD_RSS_MAX_DELTA_MB,
        )
    )
    rows += lanes_rows(r.get("lanes"))
    for name, lat in r["wyoming"].items():
        ratio = p50(lat["asr"]) / p50(lat["wfw"])
        rows.append(
            Row(
                f"Wyoming audio-stop → transcript, {name} clip ({lat['audio_seconds']:.1f} s)",
                _pp(lat["asr"]),
                f"wyoming-faster-whisper {_pp(lat['wfw'])}",
                ratio,
                f"p50 ≤ {WYOMING_MAX_RATIO}×",
                ratio <= WYOMING_MAX_RATIO,
            )
        )
    return rows


def lanes_rows(lanes: dict[str, Any] | None) -> list[Row]:
    """Copy vs shared weights for the second lane: shared's figure, copy's as the reference."""
    if not lanes:
        return []
    copy, shared = lanes["copy"], lanes["shared"]
    ratios = _round_ratios(shared["throughput"], copy["throughput"])
    return [
        Row(
            f"Lanes: single request, {lanes['clip']} clip, shared weights vs a copy per lane",
            f"shared {_pp(shared['latency'])}",
            f"copy {_pp(copy['latency'])}",
            p50(shared["latency"]) / p50(copy["latency"]),
            "—",
            None,
        ),
        Row(
            f"Lanes: {lanes['clients']} clients, {lanes['clip']} clip, shared weights vs a copy per lane",
            f"shared {_rate(shared['throughput'])}",
            f"copy {_rate(copy['throughput'])}",
            p50(ratios) if ratios else None,
            "—",
            None,
            _spread(ratios),
        ),
        Row(
            "Lanes: worker RSS loaded → after those requests, shared weights vs a copy per lane",
            f"shared ({shared['copies']} copy) {shared['worker_loaded_mb']:.0f} → {shared['worker_end_mb']:.0f} MB",
            f"copy ({copy['copies']} copies) {copy['worker_loaded_mb']:.0f} → {copy['worker_end_mb']:.0f} MB",
            shared["worker_end_mb"] / copy["worker_end_mb"],
            "—",
            None,
        ),
    ]


def markdown(rows: list[Row], meta: dict[str, Any], notes: list[str]) -> str:
    lines = [
        f"# asr-supervisor benchmark ({meta['mode']})",
        "",
        f"{meta['date']} · {meta['cpu']} · {meta['cores']} cores · model tiny.en (bundled), CPU int8, beam 5, "
        f"cpu_threads {meta['cpu_threads']} everywhere · commit {meta['commit']}",
        "",
        "| measurement | asr-supervisor | compared with | ratio | goal | result |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×"
        if row.ratio is not None and row.spread is not None:
            ratio += f" ({row.spread[0]:.2f}–{row.spread[1]:.2f})"
        lines.append(f"| {row.measurement} | {row.measured} | {row.reference} | {ratio} | {row.goal} | {row.result} |")
    missed = sum(1 for row in rows if row.ok is False)
    gated = sum(1 for row in rows if row.ok is not None)
    lines += ["", f"Goals met: {gated - missed} of {gated}.", ""]
    lines += [f"- {note}" for note in notes]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines += [f"- Versions: {versions}.", f"- Repetitions: {meta['reps']}.", ""]
    return "\n".join(lines)


def write_json(path: Path, results: dict[str, Any], rows: list[Row]) -> None:
    payload = results | {"rows": [asdict(row) | {"result": row.result} for row in rows]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def chart(path: Path, r: dict[str, Any]) -> None:
    """Four panels: warm latency, Wyoming + cold start, throughput, memory; goals drawn where they apply."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(13, 9))
    width = 0.38

    def bars(ax: Any, labels: list[str], series: dict[str, tuple[list[float], list[float]]], title: str) -> None:
        """Bars at p50 with a whisker up to p90, one group per label."""
        for i, (name, (mids, highs)) in enumerate(series.items()):
            xs = [x + (i - 0.5) * width for x in range(len(labels))]
            ax.bar(xs, mids, width, label=name)
            ax.errorbar(
                xs,
                mids,
                yerr=[[0] * len(mids), [h - m for m, h in zip(mids, highs)]],
                fmt="none",
                ecolor="black",
                capsize=3,
                lw=1,
            )
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel("seconds (bar p50, whisker p90)")
        ax.set_title(title)
        ax.legend()

    lat = r["latency"]
    bars(
        ax1,
        [f"{n}\n{v['audio_seconds']:.1f} s" for n, v in lat.items()],
        {
            "in-process": (
                [p50(v["inprocess"]) for v in lat.values()],
                [percentile(v["inprocess"], 90) for v in lat.values()],
            ),
            "asr-supervisor HTTP": (
                [p50(v["http"]) for v in lat.values()],
                [percentile(v["http"], 90) for v in lat.values()],
            ),
        },
        f"Warm transcription (goal: HTTP p50 ≤ {WARM_HTTP_MAX_RATIO}× in-process)",
    )

    wy, cold = r["wyoming"], r["cold"]
    labels = [f"Wyoming {n}" for n in wy] + ["cold start"]
    bars(
        ax2,
        labels,
        {
            "reference (wyoming-faster-whisper;\nin-process load+transcribe)": (
                [p50(v["wfw"]) for v in wy.values()] + [p50(cold["inprocess"])],
                [percentile(v["wfw"], 90) for v in wy.values()] + [percentile(cold["inprocess"], 90)],
            ),
            "asr-supervisor": (
                [p50(v["asr"]) for v in wy.values()] + [p50(cold["http"])],
                [percentile(v["asr"], 90) for v in wy.values()] + [percentile(cold["http"], 90)],
            ),
        },
        "Wyoming audio-stop → transcript; cold first request",
    )

    tp = r["throughput"]
    top = max(
        (t["requests_per_s"] for k in ("asr_http", "wfw_wyoming", "asr_wyoming") for v in tp[k].values() for t in v),
        default=1.0,
    )
    for key, label, style in (
        ("asr_http", "asr-supervisor HTTP", "o-"),
        ("wfw_wyoming", "wyoming-faster-whisper", "s-"),
        ("asr_wyoming", "asr-supervisor Wyoming", "^"),
    ):
        levels = sorted((int(c), [t["requests_per_s"] for t in v]) for c, v in tp[key].items())
        if levels:
            xs = [c for c, _ in levels]
            mids = [p50(v) for _, v in levels]
            low = [m - min(v) for m, (_, v) in zip(mids, levels)]
            high = [max(v) - m for m, (_, v) in zip(mids, levels)]
            ax3.errorbar(xs, mids, yerr=[low, high], fmt=style, label=label, markersize=8, capsize=3)
    ax3.set_xscale("log", base=2)
    ax3.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    ax3.set_xlabel("concurrent clients")
    ax3.set_ylabel("requests/s (median of rounds, bars: slowest–fastest)")
    ax3.set_ylim(0, top * 1.3)
    ax3.set_title(
        f"Throughput, {tp['clip']} clip (goal at 4 clients: ≥ {THROUGHPUT_MIN_RATIO}× wyoming-faster-whisper)"
    )
    ax3.legend()

    mem = r["memory"]
    names = [
        "supervisor\nidle",
        "service\nbefore load",
        "worker\nloaded",
        "service\nloaded",
        "service after\nTTL unload",
        "wyoming-f-w\nloaded",
    ]
    values = [
        mem["supervisor_idle_mb"],
        mem["service_before_load_mb"],
        mem["worker_loaded_mb"],
        mem["service_loaded_mb"],
        mem["service_after_unload_mb"],
        mem["wfw_loaded_mb"],
    ]
    ax4.bar(names, values, color=["C0", "C0", "C1", "C1", "C0", "C2"])
    ax4.axhline(IDLE_RSS_MAX_MB, color="red", ls="--", lw=1, label=f"idle goal {IDLE_RSS_MAX_MB:.0f} MB")
    for x, v in enumerate(values):
        ax4.text(x, v, f"{v:.0f}", ha="center", va="bottom")
    ax4.set_ylabel("RSS, MB")
    ax4.set_title("Memory (psutil RSS)")
    ax4.legend()

    fig.suptitle(
        f"asr-supervisor benchmark ({r['meta']['mode']}) · tiny.en CPU int8 · "
        f"{r['meta']['cpu_threads']} threads · {r['meta']['date']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
