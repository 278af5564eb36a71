"""YAML configs: PyYAML's parser with YAML 1.2's core schema, every key's line:col recorded,
aliases, merge keys and duplicate keys refused. Imported only for a YAML config (load.py)."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from .diagnostics import ConfigError, Diagnostic, Path_
from .load import MAX_DEPTH, Source, _checked, _LineIndex


class _CoreResolver(BaseResolver):
    """YAML 1.2 core schema scalars (PyYAML's default resolver is YAML 1.1's)."""


for _tag, _regexp, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _CoreResolver.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_regexp), _first)


class _CoreConstructor(SafeConstructor):
    def construct_yaml_int(self, node):  # YAML 1.2: "010" is ten, not octal eight
        value = self.construct_scalar(node)
        if value.startswith(("0o", "0x")):
            return int(value, 0)
        return int(value)


_CoreConstructor.add_constructor("tag:yaml.org,2002:int", _CoreConstructor.construct_yaml_int)


class _CoreLoader(Reader, Scanner, Parser, Composer, _CoreConstructor, _CoreResolver):
    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _CoreConstructor.__init__(self)
        _CoreResolver.__init__(self)


def load_yaml(text: str, name: str) -> Source:
    """A YAML 1.2 config as a Source, every key's line:col recorded; each problem one Diagnostic."""
    try:
        loader = _CoreLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, found up front
        line, col = _LineIndex(text).line_col(exc.position)
        msg = f"invalid YAML: character U+{exc.character:04X} is not allowed in YAML"
        raise ConfigError([Diagnostic(name, line, col, (), msg)]) from None
    try:
        node = loader.get_single_node()
        problems: list[Diagnostic] = []
        duplicates: list[Diagnostic] = []  # the later value wins; the rest is still checked
        positions: dict[Path_, tuple[int, int]] = {}
        _walk_yaml(node, (), positions, problems, duplicates, name, set())
        if problems:
            raise ConfigError(problems + duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        if "'\\t'" in what:
            what += " (YAML indents with spaces, not tabs)"
        raise ConfigError([Diagnostic(name, line, col, (), f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Diagnostic(name, 1, 1, (), f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return _checked(Source(name, data, MappingProxyType(positions), problems=tuple(duplicates)))


def _walk_yaml(node, path: Path_, positions, problems, duplicates, name, seen_nodes: set) -> None:
    def problem(n, p, msg, into=problems):
        into.append(Diagnostic(name, n.start_mark.line + 1, n.start_mark.column + 1, p, msg))

    if node is None:
        return
    if len(path) > MAX_DEPTH:
        problem(node, path, f"nested deeper than {MAX_DEPTH} levels")
        return
    # The composer hands an alias back as the anchored node itself: meeting a node twice means
    # an alias, which could also expand exponentially ("billion laughs").
    if id(node) in seen_nodes:
        problem(node, path, "YAML aliases (*name) are not supported: write the value out")
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                problem(
                    key_node, path, "YAML merge keys (<<) are not supported: write the keys out"
                )
                continue
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag.endswith(":str")):
                problem(key_node, path, f"keys must be strings, not {key_node.value!r}")
                continue
            key = key_node.value
            sub = (*path, key)
            if key in seen:
                first = seen[key].start_mark
                where = f"line {first.line + 1}:{first.column + 1}"
                problem(key_node, sub, f"duplicate key (first at {where})", duplicates)
                continue
            seen[key] = key_node
            positions[sub] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk_yaml(value_node, sub, positions, problems, duplicates, name, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            positions[(*path, i)] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk_yaml(item, (*path, i), positions, problems, duplicates, name, seen_nodes)
