"""Write emitted scripts: sealed with a hash of their own text, atomically, never over hand edits.

The seal is one header line, ``# mhgen-body-sha256: <hex>``, the sha256 of the file's text with
that line removed. A file whose seal no longer matches was edited by hand since mhgen wrote it;
``write`` refuses to replace it unless forced.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from .diagnostics import WriteError

SEAL = re.compile(r"^# mhgen-body-sha256: ([0-9a-f]{64})\n", re.MULTILINE)


def _digest(text: str) -> str:
    return hashlib.sha256(SEAL.sub("", text, count=1).encode("utf-8")).hexdigest()


def seal(text: str) -> str:
    """Put the hash of the text (without its seal line) into the seal line."""
    if not SEAL.search(text):
        raise ValueError("text has no seal line")
    return SEAL.sub(f"# mhgen-body-sha256: {_digest(text)}\n", text, count=1)


def state_of(text: str) -> str:
    """ "sealed" (untouched since mhgen wrote it), "edited", or "foreign" (no seal at all)."""
    m = SEAL.search(text)
    if not m:
        return "foreign"
    return "sealed" if m.group(1) == _digest(text) else "edited"


def write(path: Path, text: str, force: bool = False) -> str:
    """Write ``text`` to ``path``; returns "create", "identical" or "update"."""
    old = None
    if path.exists():
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WriteError(f"{path}: cannot read the existing file ({exc})") from None
        if old == text:
            return "identical"
        state = state_of(old)
        if state != "sealed" and not force:
            why = (
                "was edited by hand since mhgen wrote it"
                if state == "edited"
                else ("was not written by mhgen")
            )
            raise WriteError(
                f"{path}: refusing to overwrite: it {why}. "
                "Move your changes into the config, or pass --force to replace it."
            )
    _atomic_write(path, text)
    return "create" if old is None else "update"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
