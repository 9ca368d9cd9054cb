"""MkDocs hook: links from a page to files of the repository outside `docs/`.

The pages link to what they describe as it sits in the repository (`../deploy/prometheus.yml`,
`../bench/results/live.png`), so the links work when the Markdown is read on a forge or in a
clone. MkDocs only publishes `docs/`, and `--strict` fails on a link out of it. This hook
publishes each repository file that a page links to under `repo/` in the site and points the
link there. A link to a file that does not exist is left alone, so the strict build still fails
on it: a moved or deleted file cannot leave a silent dead link behind.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

#: Where the repository's files appear in the site.
PREFIX = "repo"
#: A Markdown link or image target: `](target)` or `](target "title")`, up to an anchor.
_LINK = re.compile(r"(\]\()([^)\s#]+)")


def _repo_root(config: MkDocsConfig) -> Path:
    return Path(config.docs_dir).resolve().parent


def _outside_target(page_uri: str, target: str, docs: Path, root: Path) -> str | None:
    """The repository path (`deploy/prometheus.yml`) a page's link leads to, when it leaves
    `docs/` for an existing file of the repository; else None."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(page_uri), target))
    if not joined.startswith("../"):
        return None  # inside docs/: MkDocs checks those itself
    path = (docs / joined).resolve()
    if not path.is_file() or root not in path.parents:
        return None
    return path.relative_to(root).as_posix()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    docs = Path(config.docs_dir).resolve()
    root = _repo_root(config)
    wanted: set[str] = set()
    for file in files.documentation_pages():
        if file.abs_src_path is None:
            continue
        text = Path(file.abs_src_path).read_text(encoding="utf-8")
        for match in _LINK.finditer(text):
            if (found := _outside_target(file.src_uri, match.group(2), docs, root)) is not None:
                wanted.add(found)
    for path in sorted(wanted):
        files.append(File.generated(config, _published(path), abs_src_path=str(root / path)))
    return files


def _published(path: str) -> str:
    """Where a repository file lands in the site: as a plain file, Markdown included (`.txt`),
    so it is shown as the repository has it rather than rendered as a page of the site."""
    return f"{PREFIX}/{path}.txt" if path.endswith(".md") else f"{PREFIX}/{path}"


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    docs = Path(config.docs_dir).resolve()
    root = _repo_root(config)
    page_dir = posixpath.dirname(page.file.src_uri)

    def point(match: re.Match[str]) -> str:
        found = _outside_target(page.file.src_uri, match.group(2), docs, root)
        if found is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(_published(found), page_dir or ".")

    return _LINK.sub(point, markdown)
