"""The schema as a Markdown table (``mhgen schema --markdown``), the one in etc/README.md."""

from __future__ import annotations

import json
from typing import Any

DERIVED = ("output_dir", "lora_target_modules")  # no schema default: the resolver derives them


def markdown_table(schema: dict[str, Any]) -> str:
    required = set(schema["required"])
    rows = ["| Field | Type | Default | Range / values | Meaning |", "|---|---|---|---|---|"]
    for name, spec in schema["properties"].items():
        if name in required:
            default = "required"
        elif "default" in spec:
            default = f"`{json.dumps(spec['default'])}`"
        else:
            default = "derived" if name in DERIVED else "none"
        cells = (f"`{name}`", _type(spec), default, _limits(spec), spec["description"])
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def _type(spec: dict) -> str:
    if "anyOf" not in spec:
        kind = spec["type"]
        return " or ".join(kind) if isinstance(kind, list) else kind
    parts = []
    for branch in spec["anyOf"]:
        if branch.get("type") == "array":
            parts.append(f"list of {branch['items']['type']}")
        elif branch.get("type") == "object":
            parts.append("object of string")
        elif "enum" in branch:
            parts.append(" / ".join(f'`"{e}"`' for e in branch["enum"]))
        else:
            parts.append(branch["type"])
    return " or ".join(parts)


def _number(x) -> str:
    return f"{x:g}" if isinstance(x, float) and x < 0.001 else json.dumps(x)


def _limits(spec: dict) -> str:
    if "enum" in spec:
        return ", ".join(f"`{e}`" for e in spec["enum"])
    out = []
    low = spec.get("minimum", spec.get("exclusiveMinimum"))
    if low is not None or "maximum" in spec:
        left = (
            ("> " if "exclusiveMinimum" in spec else "") + _number(low) if low is not None else ""
        )
        right = _number(spec["maximum"]) if "maximum" in spec else ""
        out.append(
            f"{left} .. {right}" if left and right else (left and f">= {left}") or f"<= {right}"
        )
    if "maxLength" in spec:
        out.append(f"{spec.get('minLength', 0)}..{spec['maxLength']:,} chars")
    if "pattern" in spec:
        out.append(f"`{spec['pattern']}`")
    for branch in spec.get("anyOf", []):
        if branch.get("type") == "array":
            bits = [f"{branch.get('minItems', 0)}..{branch['maxItems']} items"]
            if branch.get("uniqueItems"):
                bits.append("unique")
            if "pattern" in branch["items"]:
                bits.append(f"each `{branch['items']['pattern']}`")
            out.append("list: " + ", ".join(bits))
        elif branch.get("type") == "object":
            out.append(f"object: at most {branch['maxProperties']} entries")
    return "; ".join(out)
