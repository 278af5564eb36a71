"""The runtime appendix: the modules of mhgen/runtime/ as the emitted script carries them.

Each module is taken verbatim except for its top-level import statements: the standard library
ones are hoisted into the script's import block (merged, one statement per module, sorted as
isort sorts them: ``import x`` lines first, then ``from x import ...``); those between runtime
modules are dropped, since in the script every name is defined in one namespace. The text is
read once per process and is the same for every config.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from . import __version__
from .runtime import CORE, EXPERTS, PREFERENCE


@dataclass(frozen=True)
class Block:
    """Runtime modules joined: their text without imports, and the imports they need."""

    text: str
    imports: frozenset[tuple[str, str | None, str | None]]  # (module, name, as) of each

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def _module(name: str) -> tuple[str, set]:
    """A runtime module's text without its import block, and the imports it needs. The block is
    read as text (parsing whole modules would cost more than the rest of a compile): the lines
    from the first ``import``/``from`` at the top to the first line that is neither one, a
    continuation of one, nor blank. test_runtime checks that no import is left over."""
    source = resources.files("mhgen.runtime").joinpath(f"{name}.py").read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith(("import ", "from ")))
    last, statements, current = first, [], ""
    for i in range(first, len(lines)):
        line = lines[i]
        if current or line.startswith(("import ", "from ")):
            current += line
            if current.count("(") == current.count(")"):
                statements.append(current)
                current, last = "", i
        elif line.strip():
            break
    imports = set()
    for statement in statements:
        node = ast.parse(statement).body[0]
        if isinstance(node, ast.Import):
            imports |= {(alias.name, None, alias.asname) for alias in node.names}
        elif node.level == 0:  # a library's; a relative import names another runtime module
            imports |= {(node.module, alias.name, alias.asname) for alias in node.names}
    head = "".join(lines[:first]).rstrip("\n")
    body = "".join(lines[last + 1 :]).lstrip("\n")
    return f"{head}\n\n\n{body}" if head else body, imports


@cache
def block(names: tuple[str, ...]) -> Block:
    texts, imports = [], set()
    for name in names:
        text, needed = _module(name)
        texts.append(text.rstrip("\n") + "\n")
        imports |= needed
    return Block("\n\n".join(texts), frozenset(imports))


def core() -> Block:
    """The support code every script carries."""
    return block(CORE)


def experts() -> Block:
    """The 4-bit experts loader the mixture-of-experts scripts add."""
    return block(EXPERTS)


def preference() -> Block:
    """The preference pairs and DPO trainer the method dpo scripts add."""
    return block(PREFERENCE)


def import_lines(imports) -> list[str]:
    """Import statements for ``imports`` ((module, name, as) triples), sorted as isort does."""
    plain = sorted({(m, a) for m, n, a in imports if n is None})
    grouped: dict[str, list[str]] = {}
    for module, name, alias in imports:
        if name is not None:
            grouped.setdefault(module, []).append(name if alias is None else f"{name} as {alias}")
    lines = [f"import {m}" if a is None else f"import {m} as {a}" for m, a in plain]
    lines += [f"from {m} import {', '.join(sorted(set(grouped[m])))}" for m in sorted(grouped)]
    return lines


def boundary(what: str, sha256: str) -> str:
    """The comment that opens a runtime block."""
    return f"# ==== mhgen runtime {__version__}, {what} ====\n# runtime sha256: {sha256}\n"
