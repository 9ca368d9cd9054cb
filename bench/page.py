"""The benchmark's own page, docs/performance.md, and the README's headline figures.

Every part of the benchmark writes its latest results into bench/results (results.md,
live.md, lanes.md, long.md, batching.md, memory.md, parakeet.md, with their JSON), and then calls
`update()`: the site's Performance page and the few ratios the README quotes are rewritten
from those files, so neither is ever a copy typed by hand that a later run leaves behind.
Each results file carries its own date, machine and commit (`stamp()`), and the page shows
them with its table.

    .venv/bin/python -m bench.page      # rewrite both from the results there are
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PAGE = REPO / "docs" / "performance.md"
README = REPO / "README.md"
#: The README's generated block lies between these two lines.
HEADLINE_START = "<!-- bench:headline: written by python -m bench.page from bench/results; edit bench/page.py -->"
HEADLINE_END = "<!-- /bench:headline -->"


@dataclass(frozen=True)
class Part:
    """One part of the benchmark: its results file in bench/results, and what the page says of it."""

    stem: str
    heading: str
    command: str
    what: str
    chart: bool = False


PARTS = (
    Part(
        "results",
        "Files, HTTP and Wyoming",
        "python -m bench",
        "asr-supervisor against faster-whisper called in-process and against wyoming-faster-whisper, on "
        "the same model and threads: warm and cold requests, throughput, memory, Wyoming latency, lanes.",
        chart=True,
    ),
    Part(
        "live",
        "Live transcription",
        "python -m bench --live",
        "Four recorded voices streamed in real time over the live WebSocket and Wyoming: latency of "
        "partials and finals, words a final contradicts, WER against the same audio as a file, and how "
        "many live sessions one worker sustains.",
        chart=True,
    ),
    Part(
        "lanes",
        "Lanes",
        "python -m bench --lanes",
        "Two lanes on a model copy each against two lanes sharing one model's weights.",
    ),
    Part(
        "long",
        "Long recordings",
        "python -m bench --long",
        "Seven 10-minute recordings through the server, through faster-whisper read sequentially and "
        "through its BatchedInferencePipeline: time, WER and deleted words.",
    ),
    Part(
        "batching",
        "One worker, many users",
        "python -m bench --batching",
        "Windows of concurrent requests and live sessions decoded in shared calls, against lanes alone "
        "(batch_size = 1): requests per second at 4, 8 and 16 clients, replies changed by batching, and "
        "the live sessions one worker keeps in real time (goal: p95 speech end to final at most 2 s).",
    ),
    Part(
        "memory",
        "Memory for a long upload",
        "python -m bench.memory",
        "The worker's peak memory while it transcribes one upload of hours of speech.",
    ),
    Part(
        "parakeet",
        "Parakeet",
        "python -m bench.parakeet",
        "Both Parakeet runtimes beside faster-whisper on a CPU: cold and warm requests, load, throughput "
        "and memory (a tiny random Parakeet model: the runtimes' costs, not a real model's speed).",
    ),
)


def cpu_name() -> str:
    """The processor's model name, as /proc/cpuinfo gives it."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return name


def working_tree_commit() -> str:
    """HEAD, plus "-dirty" when supervisor/, worker/ or common/ differ from it (edits to bench/ don't count)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + ("-dirty" if git("status", "--porcelain", "--", "supervisor", "worker", "common") else "")


def stamp(commit: str | None = None) -> str:
    """When, where and what a run measured: the line a results file starts with."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{when} · {cpu_name()} · {os.cpu_count()} cores · commit {commit or working_tree_commit()}"


def render_page(results: Path = RESULTS) -> str:
    """docs/performance.md: each part's latest results file, as the benchmark wrote it."""
    lines = [
        "# Performance",
        "",
        "<!-- Written by the benchmark (bench/page.py) from bench/results: a run rewrites it. -->",
        "",
        "The latest results of each part of the benchmark, as it wrote them: each part's date, machine",
        "and commit are given with its table, and a part that was not run again keeps its older",
        "results. How each row is measured, and how to run it: [bench/README.md](../bench/README.md).",
        "What made these figures, older runs and one-off A/B measurements:",
        "[Measurement notes](measurements.md).",
        "",
    ]
    for part in PARTS:
        path = results / f"{part.stem}.md"
        if not path.is_file():
            continue
        lines += [f"## {part.heading}", "", f"`{part.command}`: {part.what}", ""]
        lines += _demoted(path.read_text())
        if part.chart and (results / f"{part.stem}.png").is_file():
            lines += ["", f"![{part.heading} chart](../bench/results/{part.stem}.png)"]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _demoted(text: str) -> list[str]:
    """A results file's lines, its headings turned into bold lines under the page's own."""
    out = []
    for line in text.rstrip().splitlines():
        heading = re.match(r"^#+\s+(.*)$", line)
        out.append(f"**{heading.group(1)}**" if heading else line)
    return out


def render_headline(results: Path = RESULTS) -> str:
    """The README's few figures: a ratio against the usual alternative for each interface."""
    files = _rows(results / "results.json")
    live = _rows(results / "live.json")
    bullets = []
    warm = [r["ratio"] for name, r in files.items() if name.startswith("Warm HTTP") and r.get("ratio")]
    if warm:
        bullets.append(
            f"- a file over HTTP takes {min(warm):.2f}–{max(warm):.2f}× the time of faster-whisper called "
            "in-process (p50, short to long clip)"
        )
    if cold := _ratio(files, "Cold first request"):
        bullets.append(f"- the first request after an unload: {cold:.2f}× faster-whisper loaded and run in-process")
    if busy := _ratio(files, "Throughput, 4 clients, medium clip (HTTP)"):
        bullets.append(f"- four clients at once: {busy:.2f}× the throughput of wyoming-faster-whisper")
    if stop := _ratio(live, "Wyoming audio-stop"):
        bullets.append(
            f"- Home Assistant: the transcript comes {stop:.2f}× as long after the speaker stops as "
            "wyoming-faster-whisper's"
        )
    if wer := _ratio(live, "WER: finals joined"):
        bullets.append(f"- live finals: {wer:.2f}× the word error rate of the same audio sent as a file")
    if long := _long_summary(results / "long.json"):
        bullets.append(long)
    runs = [(label, _meta(results / f"{stem}.json")) for label, stem in (("files", "results"), ("live", "live"))]
    source = "; ".join(
        f"{label}: {m['date'][:10]}, {m['cpu']}, {m['cores']} cores, commit {m['commit']}" for label, m in runs if m
    )
    return "\n".join(
        [
            HEADLINE_START,
            f"Measured by `python -m bench` with the bundled tiny.en on a CPU ({source}):",
            "",
            *bullets,
            "",
            "Every table, with its date, machine and commit: [docs/performance.md](docs/performance.md).",
            HEADLINE_END,
        ]
    )


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    return {row["measurement"]: row for row in json.loads(path.read_text()).get("rows", [])}


def _ratio(rows: dict[str, dict[str, Any]], prefix: str) -> float | None:
    return next((row["ratio"] for name, row in rows.items() if name.startswith(prefix) and row.get("ratio")), None)


def _meta(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()).get("meta") if path.is_file() else None


def _long_summary(path: Path) -> str | None:
    """The server against sequential faster-whisper, every recording pooled: time, WER, deletions."""
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())
    rows = rows.get("rows", []) if isinstance(rows, dict) else rows
    sides = {side: [r for r in rows if r["side"] == side] for side in ("server", "sequential")}
    if not sides["sequential"] or not sides["server"]:
        return None
    seconds = {side: sum(r["seconds"] for r in mine) for side, mine in sides.items()}
    wer = {
        side: sum(r["wer"] * r["reference"] for r in mine) / sum(r["reference"] for r in mine)
        for side, mine in sides.items()
    }
    deleted = {side: sum(r["deleted"] for r in mine) for side, mine in sides.items()}
    return (
        f"- 10-minute recordings ({len(sides['server'])}): {seconds['server'] / seconds['sequential']:.2f}× the time of "
        f"faster-whisper reading them sequentially, at WER {wer['server'] * 100:.1f} % against its "
        f"{wer['sequential'] * 100:.1f} %, {deleted['server']} deleted words against its {deleted['sequential']}"
    )


def with_headline(readme: str, results: Path = RESULTS) -> str:
    """The README with its generated block replaced by the latest figures."""
    start, end = readme.find(HEADLINE_START), readme.find(HEADLINE_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no block between {HEADLINE_START!r} and {HEADLINE_END!r}")
    return readme[:start] + render_headline(results) + readme[end + len(HEADLINE_END) :]


def update(results: Path = RESULTS) -> None:
    """Rewrite the page and the README's figures, when `results` is the repository's own folder
    (a run with `--out elsewhere` is an experiment, not the latest results)."""
    if results.resolve() != RESULTS.resolve():
        print(
            f"[bench] {results} is not bench/results: docs/performance.md and README.md left as they are",
            file=sys.stderr,
        )
        return
    PAGE.write_text(render_page(results))
    README.write_text(with_headline(README.read_text(), results))
    print(f"[bench] wrote {PAGE.relative_to(REPO)} and the figures in README.md", file=sys.stderr)


if __name__ == "__main__":
    update()
