"""MkDocs hook: the configuration reference page, rendered at build time from the code.

Every key of `asr.toml` is declared once, as a field: `[server]` in `supervisor.config.ServerTable`
(pydantic, its `description`s), a model's keys in `ModelOptions` and `ModelSettings` (msgspec,
their `#:` comments). Rendering the page from those fields at every build means a key added,
renamed or re-described in the code is in the docs at once, and a key the docs name but the
code lost cannot linger: there is no hand-written copy to forget.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import msgspec
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

#: Where the page lands in the site (the nav and the hand-written pages link to it).
PAGE = "reference/config.md"

_DOC_COMMENT = re.compile(r"^\s*#:\s?(.*)$")
_FIELD = re.compile(r"^\s*(\w+)\s*:")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, PAGE, content=render()))
    return files


def render() -> str:
    """The whole page: `[server]` (and any table nested in it), the model keys, `[aliases]`."""
    from supervisor import config

    server_schema = config.ServerTable.model_json_schema()
    server_defaults = config.ServerTable.model_validate({}).model_dump(mode="json")
    lines = [
        "# Configuration reference",
        "",
        "Every key `asr.toml` takes, with its type, its default and what it does. This page is",
        "generated when the site is built, from the classes that validate the file",
        "(`supervisor.config.ServerTable` for `[server]`, `ModelOptions` and `ModelSettings` for a",
        "model's keys), so it names exactly the keys the server accepts. How the file is found,",
        "how flags override it and worked examples: [Configuration](../configuration.md).",
        "",
    ]
    lines += _table_section("server", server_schema, server_schema, server_defaults, _comments(config.ServerTable))
    lines += _model_section(config)
    lines += [
        "## `[aliases]`",
        "",
        'More names for models: `alias = "model"`, each naming a configured model. A client may send',
        f"the alias wherever it sends a model name. `{config.OPENAI_ALIAS}` means the default model",
        "unless it is listed here.",
        "",
    ]
    return "\n".join(lines)


def _model_section(config: Any) -> list[str]:
    """`[defaults]` and `[models."NAME"]` share their keys: what the worker loads, then what the
    supervisor keeps (`MODEL_KEYS` is that order)."""
    options_cls = _model_options(config)
    schemas: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    defaults: dict[str, Any] = {}
    comments: dict[str, str] = {}
    for cls in (options_cls, config.ModelSettings):
        schema = msgspec.json.schema(cls)
        body = _resolve(schema, schema)
        schemas.update({name: (body, schema) for name in body.get("properties", {})})
        defaults.update(msgspec.to_builtins(cls()))
        comments.update(_comments(cls))
    lines = [
        '## `[defaults]` and `[models."NAME"]`',
        "",
        'One `[models."NAME"]` table per model; `[defaults]` holds what every model falls back to,',
        "and any of these keys may be set in either (except "
        + ", ".join(f"`{key}`" for key in config.MODEL_KEYS if key not in config.DEFAULT_KEYS)
        + ", which only a model's own table takes). The flags of `asr-supervisor` named like a key",
        "override it for every model.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key in config.MODEL_KEYS:
        body, root = schemas[key]
        prop = body["properties"][key]
        description = prop.get("description") or _resolve(prop, root).get("description") or comments.get(key, "")
        lines.append(_row(key, prop, root, defaults.get(key), description))
    return [*lines, ""]


def _model_options(config: Any) -> Any:
    """`ModelOptions`, the worker's half of a model's keys, as `supervisor.config` sees it."""
    options = getattr(config, "ModelOptions", None)
    if options is None:  # not re-exported: it lives with the wire protocol
        from common.protocol.options import ModelOptions as options
    return options


def _table_section(
    name: str, schema: dict[str, Any], root: dict[str, Any], defaults: dict[str, Any], comments: dict[str, str]
) -> list[str]:
    """One `[table]`: a row per key; a key whose value is itself a table gets its own section after."""
    lines = [f"## `[{name}]`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[str, dict[str, Any]]] = []
    for key, prop in schema.get("properties", {}).items():
        target = _resolve(prop, root)
        if target.get("type") == "object" and "properties" in target:
            nested.append((key, target))
            lines.append(f"| `{key}` | table | | see [`[{name}.{key}]`](#{_anchor(f'{name}.{key}')}) |")
            continue
        description = prop.get("description") or target.get("description") or comments.get(key, "")
        lines.append(_row(key, prop, root, defaults.get(key), description))
    lines.append("")
    for key, target in nested:
        lines += _table_section(f"{name}.{key}", target, root, defaults.get(key) or {}, {})
    return lines


def _anchor(table: str) -> str:
    """The id MkDocs' toc gives the heading "`[table]`"."""
    return re.sub(r"[^\w-]", "", table.replace(".", ""))


def _row(key: str, prop: dict[str, Any], root: dict[str, Any], default: Any, description: str) -> str:
    cells = [f"`{key}`", _kind(prop, root), _toml(default), description.replace("\n", " ")]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a `$ref` into `$defs` (msgspec puts even the top class there)."""
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _kind(prop: dict[str, Any], root: dict[str, Any]) -> str:
    """A JSON-schema type in words: `integer, 1 to 65535`, `one of "a", "b"`, `list of string`."""
    prop = _resolve(prop, root)
    if "anyOf" in prop:
        parts = [_kind(part, root) for part in prop["anyOf"] if part.get("type") != "null"]
        optional = any(part.get("type") == "null" for part in prop["anyOf"])
        return " or ".join(parts) + (" (optional)" if optional else "")
    if "enum" in prop:
        return "one of " + ", ".join(f"`{json.dumps(value)}`" for value in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return "list of " + _kind(prop.get("items", {}), root)
    words = {"ipvanynetwork": "IP network (CIDR)"}.get(prop.get("format", ""), str(kind))
    limits = []
    if "minimum" in prop:
        limits.append(f"≥ {prop['minimum']}")
    if "exclusiveMinimum" in prop:
        limits.append(f"> {prop['exclusiveMinimum']}")
    if "maximum" in prop:
        limits.append(f"≤ {prop['maximum']}")
    if "minLength" in prop:
        limits.append(f"at least {prop['minLength']} character{'s' if prop['minLength'] != 1 else ''}")
    if "maxLength" in prop:
        limits.append(f"at most {prop['maxLength']} characters")
    return words + (", " + ", ".join(limits) if limits else "")


def _toml(value: Any) -> str:
    """A default as it would be written in `asr.toml`; unset (None) is left blank."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | int | float):
        return f"`{json.dumps(value)}`"
    if isinstance(value, list):
        return "`[" + ", ".join(json.dumps(item) for item in value) + "]`"
    return f"`{json.dumps(value)}`"


def _comments(cls: type) -> dict[str, str]:
    """A class's `#:` comments, by the field they stand above (Sphinx's convention): where
    msgspec fields, which carry no description, say what they are."""
    try:
        source, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    pending: list[str] = []
    for line in source[1:]:
        if comment := _DOC_COMMENT.match(line):
            pending.append(comment.group(1).strip())
            continue
        if (field := _FIELD.match(line)) and pending:
            found[field.group(1)] = " ".join(pending)
        pending = []
    return found
