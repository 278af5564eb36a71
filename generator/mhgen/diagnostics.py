"""Diagnostics: the one shape every user-facing problem takes, and the errors that carry them.

A diagnostic prints as ``FILE:LINE:COL: $.path: message`` (warnings say ``warning:`` before the
message). Each pipeline stage raises its own error type; the CLI maps them to exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass

Path_ = tuple[str | int, ...]


def json_path(path: Path_) -> str:
    """``("notes", 2)`` -> ``$.notes[2]``; keys that are not identifiers are quoted."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += "[" + _quote(part) + "]"
    return out


def _quote(key: str) -> str:
    escaped = key.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    return f"'{escaped}'"


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int
    col: int
    path: Path_
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}: {json_path(self.path)}: "
        prefix = "warning: " if self.severity == "warning" else ""
        # One line each, whatever the message holds.
        return where + prefix + " ".join(self.message.split())

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class MhgenError(Exception):
    """Base of mhgen's own errors: a user-facing message, never a traceback."""

    exit_code = 1


class ConfigError(MhgenError):
    """The config could not be loaded or is invalid; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line, d.col, d.message))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class UsageError(MhgenError):
    """The command line itself is wrong (missing file, bad option)."""

    exit_code = 2


class WriteError(MhgenError):
    """An output could not be written safely (hand-edited target, unsafe path)."""

    exit_code = 1
