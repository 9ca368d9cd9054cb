"""Tables that fit the terminal, and the one of models' states that `status` and `models list` print.

Everything they print came from the server: cells are `Text`, never read as rich markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from supervisor.models.snapshot import ModelSnapshot

console = Console()
WideOption = Annotated[bool, typer.Option("--wide", help="every column, however wide the terminal")]


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    #: 0: always shown; else the order in which columns are left out when the table is too
    #: wide (the highest first).
    drop: int = 0
    #: Long text that wraps (counted at `min_width`, and at most `max_width` wide with --wide);
    #: other columns are never wrapped or cut.
    wraps: bool = False
    justify: str = "left"
    min_width: int = 20
    max_width: int = 60

    def width(self, cells: list[str], wide: bool) -> int:
        """Its width on one line: its longest cell, or for wrapping text its min or max width."""
        longest = max([cell_len(self.header), *map(cell_len, cells)])
        return min(longest, self.max_width if wide else self.min_width) if self.wraps else longest


def fit(columns: list[Column], rows: list[list[str]], width: int, wide: bool) -> list[int]:
    """The columns to show: all with `--wide`, else as many as fit `width`, dropping by `drop`."""
    shown = list(range(len(columns)))
    if wide:
        return shown
    while table_width(columns, rows, shown, wide) > width:
        droppable = [i for i in shown if columns[i].drop]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: columns[i].drop))
    return shown


def table_width(columns: list[Column], rows: list[list[str]], shown: list[int], wide: bool) -> int:
    """A table's width: its columns' and, per column, a space each side and a rule."""
    return sum(columns[i].width([row[i] for row in rows], wide) + 3 for i in shown) + 1


def print_table(columns: list[Column], rows: list[list[str]], wide: bool) -> list[int]:
    """Print the rows with the columns that fit; return the indices of those left out."""
    shown = fit(columns, rows, console.width, wide)
    table = Table()
    for i in shown:
        c = columns[i]
        table.add_column(
            c.header,
            justify=c.justify,  # type: ignore[arg-type]  # one of rich's JustifyMethod literals
            no_wrap=not c.wraps,
            overflow="fold",
            min_width=None if c.wraps else c.width([row[i] for row in rows], wide),
            max_width=c.max_width if c.wraps and wide else None,
        )
    for row in rows:
        table.add_row(*(Text(row[i]) for i in shown))  # Text: a cell is never read as markup
    # With --wide, lines longer than the terminal are printed whole (it wraps them), not cut.
    needed = table_width(columns, rows, shown, wide)
    (Console(width=needed) if wide and needed > console.width else console).print(table, crop=not wide)
    return [i for i in range(len(columns)) if i not in shown]


def left_out_note(columns: list[Column], left_out: list[int]) -> None:
    if left_out:
        names = ", ".join(columns[i].header for i in left_out)
        console.print(Text(f"(--wide for every column: {names})"))


STATUS_COLUMNS = [
    Column("model"),
    Column("state"),
    Column("pid", drop=3, justify="right"),
    Column("device", drop=5),
    Column("lanes", drop=8),
    Column("rss MB", drop=4, justify="right"),
    Column("ttl", drop=7, justify="right"),
    Column("ttl left", drop=2, justify="right"),
    Column("in flight", drop=6, justify="right"),
    Column("requests", drop=7, justify="right"),
    Column("note", drop=9, wraps=True),
]
_NOTE = len(STATUS_COLUMNS) - 1


def print_models(models: dict[str, ModelSnapshot], default: str, wide: bool) -> None:
    rows = [
        [
            f"{name} (default)" if name == default else name,
            m.state,
            str(m.pid or ""),
            m.device or "",
            lanes(m),
            "" if m.rss_mb is None else f"{m.rss_mb:.0f}",
            str(m.ttl),
            "" if m.ttl_remaining is None else f"{m.ttl_remaining:.0f}s",
            str(m.in_flight),
            str(m.requests),
            m.last_error or m.description or "",
        ]
        for name, m in models.items()
    ]
    left_out = print_table(STATUS_COLUMNS, rows, wide)
    if _NOTE in left_out:  # notes (a failed model's error above all) go under the table instead
        left_out.remove(_NOTE)
        for name, row in zip(models, rows, strict=True):
            if row[_NOTE]:
                console.print(Text(f"{name}: {row[_NOTE]}"))
    left_out_note(STATUS_COLUMNS, left_out)


def lanes(m: ModelSnapshot) -> str:
    """ "2, 2 copies" or "2, shared": how many requests it decodes at once, and at what memory."""
    if m.concurrency is None:
        return ""
    if m.concurrency == 1:
        return "1"
    how = "shared" if m.lane_weights == "shared" else f"{m.copies or m.concurrency} copies"
    return f"{m.concurrency}, {how}"
