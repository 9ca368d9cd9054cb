"""MkDocs hook: the command-line reference page, rendered at build time from the typer apps.

`asr-supervisor` is `supervisor.cli`'s app, `asrctl` is `supervisor.ctl`'s. The page is what
`--help` prints for each command and subcommand (usage, help, every option with its own help,
default and environment variable), walked from the apps themselves: a flag added or renamed in
the code is on the page at the next build, and there is no second copy of the flags to update.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "reference/cli.md"
#: (program name, module that holds its typer app): the console scripts of pyproject.toml.
PROGRAMS = (("asr-supervisor", "supervisor.cli"), ("asrctl", "supervisor.ctl"))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, PAGE, content=render()))
    return files


def render() -> str:
    lines = [
        "# Command-line reference",
        "",
        "Every command and flag of `asr-supervisor` (the server) and `asrctl` (its administration",
        "client), as their `--help` prints them. This page is generated when the site is built, from",
        "the typer apps in `supervisor.cli` and `supervisor.ctl`, so it lists exactly the flags they",
        "take. A flag of `asr-supervisor` named like a configuration key overrides that key: see the",
        "[configuration reference](config.md).",
        "",
    ]
    for prog, module_name in PROGRAMS:
        module = importlib.import_module(module_name)
        root = command_of(module)
        for path, command, ctx in walk(root, prog):
            lines += _section(path, command, ctx, module if path == prog else None)
    return "\n".join(lines)


def command_of(module: ModuleType) -> Any:
    """The module's typer app as a click command (a group when it has subcommands)."""
    import typer

    apps = [value for value in vars(module).values() if isinstance(value, typer.Typer)]
    # The root is the app no other app of the module includes as a subcommand group.
    included = {id(group.typer_instance) for app in apps for group in app.registered_groups}
    roots = [app for app in apps if id(app) not in included]
    if len(roots) != 1:
        raise RuntimeError(f"{module.__name__}: expected one root typer app, found {len(roots)}")
    return typer.main.get_command(roots[0])


def walk(command: Any, path: str, parent: Any = None) -> Iterator[tuple[str, Any, Any]]:
    """(`asrctl models load`, its command, its context), the root first, then depth first in
    the order the app declares them."""
    ctx = command.context_class(command, info_name=path.rsplit(" ", 1)[-1], parent=parent)
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                yield from walk(sub, f"{path} {name}", ctx)


def _section(path: str, command: Any, ctx: Any, module: ModuleType | None) -> list[str]:
    depth = path.count(" ")
    lines = [f"{'#' * min(2 + depth, 4)} `{path}`", ""]
    text = command.help
    if not text and module is not None:  # a single-command app: its module says what it is
        text = (module.__doc__ or "").strip().split("\n\n")[0]
    if text:
        lines += [_plain(text), ""]
    lines += ["```", command.get_usage(ctx).strip(), "```", ""]
    records = [record for param in command.params if (record := param.get_help_record(ctx))]
    if records:
        lines += ["| option | meaning |", "|---|---|"]
        lines += [f"| `{opts}` | {_cell(help_text)} |" for opts, help_text in records]
        lines.append("")
    return lines


def _plain(text: str) -> str:
    """Click's help text as Markdown paragraphs (`\\b` marks a block click must not rewrap)."""
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
