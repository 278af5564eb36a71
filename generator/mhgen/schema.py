"""The config's JSON Schema: the single source of truth for field names, types, ranges and defaults.

It lives at the repository's ``schema/training.schema.json``; a wheel carries a copy inside the
package. Code reads defaults and field names from here, never from a second table.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

_PACKAGED = Path(__file__).with_name("training.schema.json")
_IN_REPO = Path(__file__).resolve().parents[2] / "schema" / "training.schema.json"


def schema_path() -> Path:
    return _IN_REPO if _IN_REPO.is_file() else _PACKAGED


@cache
def schema_text() -> str:
    return schema_path().read_text(encoding="utf-8")


@cache
def load_schema() -> dict[str, Any]:
    return json.loads(schema_text())


def properties() -> dict[str, Any]:
    return load_schema()["properties"]


@cache
def defaults() -> MappingProxyType:
    """Every field's schema default (fields without one are derived by the resolver)."""
    return MappingProxyType({k: v["default"] for k, v in properties().items() if "default" in v})
