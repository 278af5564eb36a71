"""The compiler in one function: load -> validate -> resolve -> render -> format -> seal.

Pure apart from reading the config file: writing is write.py's job, running is run.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .diagnostics import ConfigError, Diagnostic
from .format import check_compiles, format_source
from .load import Source, load_file
from .render import append_runtime, render
from .resolve import Plan, resolve
from .validate import validate
from .write import seal


@dataclass(frozen=True)
class Compiled:
    source: Source
    plan: Plan
    text: str
    warnings: tuple[Diagnostic, ...]


def check_config(path: str | Path) -> tuple[Source, list[Diagnostic]]:
    """Load and validate; raises ConfigError (with the warnings too) when there is any error."""
    source = load_file(path)
    found = validate(source)
    if any(d.is_error for d in found):
        raise ConfigError(found)
    return source, found


def compile_config(path: str | Path) -> Compiled:
    return compile_source(*check_config(path))


def compile_source(source: Source, warnings: list[Diagnostic] = ()) -> Compiled:
    plan = resolve(source)
    # the runtime is formatted and compiled already (its modules are the package's own)
    recipe = check_compiles(format_source(render(plan), plan.script_name), plan.script_name)
    text = seal(append_runtime(recipe, plan))
    return Compiled(source, plan, text, tuple(warnings))
