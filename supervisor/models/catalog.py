"""Well-known models of every backend: the names users type, mapped to hub repos.

The entries live in each backend's description (`worker.backends.<backend>`); this module
only joins them, so `asrctl models list --available` and `/v1/models` see every backend's
catalogue without knowing which backends exist.
"""

from __future__ import annotations

from common.backends import DESCRIPTIONS, KnownModel

__all__ = ["CATALOG", "KnownModel", "lookup"]

#: Every backend's entries, in backend order. A name two backends share keeps the first's.
CATALOG: dict[str, KnownModel] = {}
for _description in DESCRIPTIONS.values():
    for _known in _description.catalog:
        CATALOG.setdefault(_known.name, _known)


def lookup(name: str, backend: str | None = None) -> KnownModel | None:
    """The entry `name` (or an alias such as `large`) means, in `backend`'s catalogue when given."""
    if backend is not None:
        description = DESCRIPTIONS.get(backend)
        return description.lookup(name) if description else None
    return next((known for d in DESCRIPTIONS.values() if (known := d.lookup(name)) is not None), None)
