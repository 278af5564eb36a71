"""Format rendered source with the pinned ruff, then prove it compiles.

ruff runs isolated (no user or project config can change the bytes) with the same settings as
this repository's [tool.ruff]: line length 100, Python 3.10 syntax.
"""

from __future__ import annotations

import subprocess

from .diagnostics import MhgenError

RUFF_ARGS = ("format", "--isolated", "--line-length", "100", "--target-version", "py310")


class FormatError(MhgenError):
    """The generator produced code that ruff or Python rejects: a bug in mhgen, not the config."""


def ruff_binary() -> str:
    from ruff.__main__ import find_ruff_bin

    return str(find_ruff_bin())


def format_source(text: str, name: str = "train.py") -> str:
    proc = subprocess.run(
        [ruff_binary(), *RUFF_ARGS, "--stdin-filename", name, "-"],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise FormatError(f"mhgen bug: ruff could not format {name}: {proc.stderr.decode()}")
    return proc.stdout.decode("utf-8")


def check_compiles(text: str, name: str = "train.py") -> str:
    """``text``, once Python has compiled it."""
    try:
        compile(text, name, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise FormatError(f"mhgen bug: {name} does not compile: {exc}") from None
    return text
