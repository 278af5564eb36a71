"""Load a config file (JSON or YAML) into a Source: its data plus the line:column of every key.

Both loaders are strict where a silent guess would lose the user's intent: duplicate keys, NaN and
Infinity, YAML aliases and non-string keys are errors. YAML is read with YAML 1.2's core rules
(``2e-4`` is a number, ``2025-08-05`` and ``yes`` are strings), so a YAML config means what the
same JSON would.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import model_files
from .diagnostics import ConfigError, Diagnostic, Path_

MAX_BYTES = 1 << 20  # a config is a page of settings; anything near this size is a wrong file
MAX_DEPTH = 32
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Source:
    """A loaded config: what the user wrote, where each key is, and which file it came from."""

    file: str
    data: Any
    positions: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    # The config's name, which names its script and output folder ("" for a config that is not
    # a file: the model's name stands in then); see config_name().
    name: str = ""
    # Problems found while loading that still leave data to check (duplicate keys, numbers that
    # are not finite, text that is not Unicode): validate() reports them with everything else.
    problems: tuple[Diagnostic, ...] = ()
    # What the model's own files say (model_files.py), or why they could not be read.
    model: model_files.ModelFiles | None = None
    model_problem: str = ""

    def where(self, path: Path_) -> tuple[int, int]:
        """line, col of the deepest key of ``path`` that exists (1, 1 for the whole document)."""
        for end in range(len(path), 0, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos:
                return pos
        return (1, 1)

    def diagnostic(self, path: Path_, message: str, severity: str = "error") -> Diagnostic:
        line, col = self.where(path)
        return Diagnostic(self.file, line, col, tuple(path), message, severity)


def load_file(path: str | Path) -> Source:
    """Read and parse one config file; raises ConfigError with every problem found."""
    name = str(path)
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(
                [Diagnostic(name, 1, 1, (), f"file is {size:,} bytes; a config is at most 1 MiB")]
            )
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError([Diagnostic(name, 1, 1, (), f"cannot read: {exc.strerror}")]) from None
    source = load_bytes(raw, name, yaml_syntax=p.suffix.lower() in YAML_SUFFIXES)
    return with_model_files(replace(source, name=config_name(p, source.data)))


def with_model_files(source: Source) -> Source:
    """The source with what its model's config.json and chat template say, when they are here."""
    base_model = source.data.get("base_model") if isinstance(source.data, dict) else None
    if not isinstance(base_model, str) or not base_model.strip():
        return source
    try:
        return replace(source, model=model_files.find(base_model))
    except model_files.ModelFilesError as exc:
        return replace(source, model_problem=str(exc))


CONFIG_SUFFIXES = (".json", *YAML_SUFFIXES)
ACTIVE = "training"  # etc/training.json: the active config, a copy of a named one


def config_name(path: Path, data: Any) -> str:
    """The name of a config: ``training-NAME.json`` is NAME; the active ``training.json`` has the
    name of the ``training-NAME`` beside it whose content it copies (``training`` when it matches
    none); any other file is named by its stem."""
    stem = path.stem
    if stem.startswith(ACTIVE + "-") and len(stem) > len(ACTIVE) + 1:
        return stem[len(ACTIVE) + 1 :]
    if stem != ACTIVE or not isinstance(data, dict):
        return stem
    digest = canonical_sha256(data)
    for sibling in sorted(path.parent.glob(ACTIVE + "-*")):
        if sibling.suffix.lower() not in CONFIG_SUFFIXES or not sibling.is_file():
            continue
        try:
            raw = sibling.read_bytes()
            other = load_bytes(raw, str(sibling), sibling.suffix.lower() in YAML_SUFFIXES).data
        except (OSError, ConfigError):
            continue
        if isinstance(other, dict) and canonical_sha256(other) == digest:
            return sibling.stem[len(ACTIVE) + 1 :]
    return stem


def canonical_sha256(data: dict[str, Any]) -> str:
    """Hash of the config's content. The order of the top-level keys, the layout, JSON vs YAML
    and $schema do not count; the order inside a value does (a notes object is shown in order)."""
    content = {k: data[k] for k in sorted(data) if k != "$schema"}
    text = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_bytes(raw: bytes, name: str, yaml_syntax: bool = False) -> Source:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _line_col_bytes(raw, exc.start)
        msg = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        raise ConfigError([Diagnostic(name, line, col, (), msg)]) from None
    if "\x00" in text:
        line, col = _LineIndex(text).line_col(text.index("\x00"))
        raise ConfigError([Diagnostic(name, line, col, (), "contains a NUL byte: not a text file")])
    if not text.strip():
        kind = "YAML mapping" if yaml_syntax else "JSON object"
        raise ConfigError([Diagnostic(name, 1, 1, (), f"file is empty; expected a {kind}")])
    if yaml_syntax:
        from .load_yaml import load_yaml  # PyYAML is imported only for a YAML config

        return load_yaml(text, name)
    return _load_json(text, name)


def _line_col_bytes(raw: bytes, offset: int) -> tuple[int, int]:
    line = raw.count(b"\n", 0, offset) + 1
    return line, offset - (raw.rfind(b"\n", 0, offset) + 1) + 1


class _LineIndex:
    def __init__(self, text: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_col(self, offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1


# --- JSON ---------------------------------------------------------------------------------
# json.loads finds syntax errors (with its own line and column); a second walk over the now
# known-good text records positions, duplicates and non-finite numbers, using json's own scanners.

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _load_json(text: str, name: str) -> Source:
    try:
        json.loads(text, parse_constant=lambda _: None)
    except json.JSONDecodeError as exc:
        line, col, msg = exc.lineno, exc.colno, f"invalid JSON: {exc.msg}"
        before = text[: exc.pos].rstrip()
        if text.startswith(("//", "/*", "#"), exc.pos):
            msg = "invalid JSON: JSON has no comments (write them in notes, or use a YAML config)"
        elif text[exc.pos : exc.pos + 1] in ("}", "]") and before.endswith(","):
            line, col = _LineIndex(text).line_col(len(before) - 1)
            msg = "invalid JSON: trailing comma (JSON allows none before a closing bracket)"
        raise ConfigError([Diagnostic(name, line, col, (), msg)]) from None
    except RecursionError:
        raise ConfigError([Diagnostic(name, 1, 1, (), "invalid JSON: nested too deeply")]) from None
    walker = _JsonWalker(text, name)
    data = walker.value(_WS.match(text, 0).end(), ())[0]
    source = Source(name, data, MappingProxyType(walker.positions), problems=tuple(walker.problems))
    return _checked(source)


class _JsonWalker:
    def __init__(self, text: str, name: str):
        self.s, self.name = text, name
        self.lines = _LineIndex(text)
        self.positions: dict[Path_, tuple[int, int]] = {}
        self.problems: list[Diagnostic] = []

    def problem(self, idx: int, path: Path_, message: str) -> None:
        line, col = self.lines.line_col(idx)
        self.problems.append(Diagnostic(self.name, line, col, path, message))

    def skip(self, idx: int) -> int:
        return _WS.match(self.s, idx).end()

    def value(self, idx: int, path: Path_) -> tuple[Any, int]:
        s = self.s
        if len(path) > MAX_DEPTH:
            self.problem(idx, path, f"nested deeper than {MAX_DEPTH} levels")
            return None, _skip_json_value(s, idx)
        ch = s[idx]
        if ch == "{":
            return self.obj(idx, path)
        if ch == "[":
            return self.arr(idx, path)
        if ch == '"':
            return json.decoder.scanstring(s, idx + 1)
        for word, val in (("true", True), ("false", False), ("null", None)):
            if s.startswith(word, idx):
                return val, idx + len(word)
        for word in ("NaN", "Infinity", "-Infinity"):
            if s.startswith(word, idx):
                self.problem(idx, path, f"{word} is not a number JSON allows")
                return None, idx + len(word)
        m = _NUMBER.match(s, idx)
        number = int(m.group()) if not (m.group(2) or m.group(3)) else float(m.group())
        if isinstance(number, float) and not math.isfinite(number):
            self.problem(idx, path, f"{m.group()} is too large to be a finite number")
            return None, m.end()
        return number, m.end()

    def obj(self, idx: int, path: Path_) -> tuple[dict, int]:
        out: dict[str, Any] = {}
        idx = self.skip(idx + 1)
        if self.s[idx] == "}":
            return out, idx + 1
        while True:
            key_at = idx
            key, idx = json.decoder.scanstring(self.s, idx + 1)
            sub = (*path, key)
            if key in out:
                first = self.positions[sub]
                self.problem(key_at, sub, f"duplicate key (first at line {first[0]}:{first[1]})")
            else:
                self.positions[sub] = self.lines.line_col(key_at)
            idx = self.skip(self.skip(idx) + 1)  # past ':'
            val, idx = self.value(idx, sub)
            out.setdefault(key, val)
            idx = self.skip(idx)
            if self.s[idx] == "}":
                return out, idx + 1
            idx = self.skip(idx + 1)  # past ','

    def arr(self, idx: int, path: Path_) -> tuple[list, int]:
        out: list[Any] = []
        idx = self.skip(idx + 1)
        if self.s[idx] == "]":
            return out, idx + 1
        while True:
            sub = (*path, len(out))
            self.positions[sub] = self.lines.line_col(idx)
            val, idx = self.value(idx, sub)
            out.append(val)
            idx = self.skip(idx)
            if self.s[idx] == "]":
                return out, idx + 1
            idx = self.skip(idx + 1)


def _skip_json_value(s: str, idx: int) -> int:
    """End of the (valid) JSON value starting at idx, without building it."""
    return json.JSONDecoder(parse_constant=lambda _: None).raw_decode(s, idx)[1]


def _checked(source: Source) -> Source:
    """Flag values no config can mean: non-finite numbers (left as null, so that nothing else is
    said of them), and text that is not Unicode."""
    bad = list(_bad_values(source.data, ()))
    if not bad:
        return source
    data = source.data
    for path, _ in bad:
        if path and isinstance(_at(data, path), float):
            _at(data, path[:-1])[path[-1]] = None
    problems = tuple(source.diagnostic(path, message) for path, message in bad)
    return replace(source, data=data, problems=source.problems + problems)


def _at(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_values(data: Any, path: Path_):
    if isinstance(data, float) and not math.isfinite(data):
        yield path, f"{data} is not a finite number"
    elif isinstance(data, str) and _SURROGATE.search(data):
        code = ord(_SURROGATE.search(data).group())
        yield path, f"holds \\u{code:04x}, half of a UTF-16 surrogate pair, which is not text"
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _bad_values(key, (*path, key))
            yield from _bad_values(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _bad_values(value, (*path, i))
