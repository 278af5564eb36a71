"""Property tests (hypothesis): hostile strings stay data, and no input escapes as a crash.

- Random valid configs, with strings full of quotes, backslashes, control characters, line
  separators, template syntax and comment markers, compile to scripts that parse, pass ruff, and
  whose constants read back (ast.literal_eval) exactly as the config's values.
- Arbitrary JSON / YAML documents and arbitrary bytes: loading and validating them raises
  nothing but mhgen's own ConfigError.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import MINIMAL, REPO, write_config
from mhgen.diagnostics import ConfigError
from mhgen.format import ruff_binary
from mhgen.load import load_bytes
from mhgen.pipeline import compile_config, compile_source
from mhgen.validate import validate
from mhgen.write import write

HOSTILE = st.sampled_from(
    ['"', "'", '"""', "'''", "\\", "\\n", "\r", "\n", "\r\n", "\t", "\x00", "\x0b", "\x0c", "\x1b",
     "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\U0010ffff", "{{ x }}", "{% if %}", "{#", "# ",
     "\\x00", "\\N{DASH}", "${HOME}", "`", "é", "😀", " ", "--", "__import__('os')"]
)  # fmt: skip
TEXT = st.lists(st.one_of(HOSTILE, st.text(max_size=8)), max_size=12).map("".join)
# a model name whose last path component holds a letter or digit (others have no slug: refused)
LAST = TEXT.map(lambda t: t.replace("/", "").replace("\\", ""))
MODEL = st.tuples(TEXT, st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True), LAST).map("".join)
CASES = {"injection": 0, "fuzz_documents": 0, "fuzz_bytes": 0}  # counted for the closing note

CONFIGS = st.fixed_dictionaries(
    {
        "base_model": MODEL,
        "chat_template": st.sampled_from(
            ["auto", "harmony", "chatml", "llama", "llama3", "mistral"]
        ),
        "system_prompt": TEXT,
    },
    optional={
        "notes": st.one_of(
            TEXT, st.lists(TEXT, max_size=3), st.dictionaries(TEXT, TEXT, max_size=3)
        ),
        "dataset_path": TEXT.filter(bool),
        "output_dir": TEXT.filter(bool),
        "eval_dataset_path": st.one_of(st.none(), TEXT.filter(bool)),
        "learning_rate": st.floats(1e-7, 1.0, exclude_min=True),
        "lora_rank": st.integers(1, 1024),
        "lora_dropout": st.floats(0, 0.9),
        "max_seq_length": st.integers(16, 262144),
        "load_in_4bit": st.booleans(),
        "dtype": st.sampled_from(["bfloat16", "float16", "float32"]),
        "lora_target_modules": st.lists(
            st.from_regex(r"[A-Za-z0-9_.]{1,20}", fullmatch=True),
            min_size=1,
            max_size=5,
            unique=True,
        ),
        "num_train_epochs": st.floats(0.01, 1000),
        "reasoning_effort": st.sampled_from(["low", "medium", "high"]),
    },
)


def constants(text: str) -> dict:
    """Module-level NAME = literal assignments of a script, evaluated as data."""
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue  # an f-string or expression, not a config value
    return out


def compiled_in(text: str) -> dict[str, str]:
    """The settings the code is written for, key -> value as shown: the one wrapped comment
    "# compiled in: key: value, ..." right below CONFIG_SHA256."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("CONFIG_SHA256 = ")) + 1
    end = start + 1
    while lines[end].startswith("# "):
        end += 1
    joined = " ".join(line.removeprefix("# ") for line in lines[start:end])
    assert joined.startswith("compiled in: "), lines[start]
    items = joined.removeprefix("compiled in: ").split(", ")
    return dict(item.split(": ", 1) for item in items)


# Every example compiles a whole script (ruff included, ~100 ms): CI, with its fixed seed, runs an
# eighth of what a local run explores, to keep the suite well inside CI's time.
HOSTILE_EXAMPLES = 250 if os.environ.get("CI") else 2000


def test_hostile_strings_stay_data(tmp_path):
    scripts = []

    @settings(max_examples=HOSTILE_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(CONFIGS)
    def check(config):
        CASES["injection"] += 1
        source = load_bytes(json.dumps(config).encode(), "hostile.json")
        found = validate(source)
        assert not [d for d in found if d.is_error], found
        compiled = compile_source(source, found)
        assert re.fullmatch(r"train_[a-z0-9_]{1,56}\.py", compiled.plan.script_name)
        tree = ast.parse(compiled.text)
        values = constants(compiled.text)
        assert values["BASE_MODEL"] == config["base_model"]
        assert values["SYSTEM_PROMPT"] == config["system_prompt"]
        for key in ("dataset_path", "output_dir", "eval_dataset_path", "learning_rate", "lora_rank",
                    "lora_dropout", "max_seq_length", "dtype", "lora_target_modules",
                    "num_train_epochs"):  # fmt: skip
            if key in config:
                assert values[key.upper()] == config[key], key
        if "load_in_4bit" in config:  # compiled in: the code is written for it, and says so
            assert compiled_in(compiled.text)["load_in_4bit"] == json.dumps(config["load_in_4bit"])
        notes = config.get("notes", [])
        notes = [notes] if isinstance(notes, str) else notes
        notes = [f"{k}: {v}" for k, v in notes.items()] if isinstance(notes, dict) else notes
        doc = "".join(ast.get_docstring(tree).split())
        for note in notes:
            assert "".join(note.split()) in doc
        if len(scripts) < 300:
            path = tmp_path / f"s{len(scripts)}.py"
            write(path, compiled.text)  # as mhgen writes it: executable, for the shebang
            scripts.append(path)

    check()
    # ruff's own default rules (a user's bare `ruff check`), the repository's, and the format
    for args in (
        ["check", "--quiet", "--isolated", "--line-length", "100"],
        ["check", "--quiet", "--config", str(REPO / "pyproject.toml")],
        ["format", "--check", "--quiet", "--isolated", "--line-length", "100"],
    ):
        proc = subprocess.run([ruff_binary(), *args, str(tmp_path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[:3000] + proc.stderr[:3000]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
KEYS = st.sampled_from(
    [
        "base_model",
        "chat_template",
        "system_prompt",
        "lora_rank",
        "notes",
        "dtype",
        "lora_target_modules",
        "eval_split",
    ]
)
NEAR_CONFIGS = st.dictionaries(st.one_of(KEYS, st.text(max_size=10)), JSON_VALUES, max_size=8)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(JSON_VALUES, NEAR_CONFIGS), st.booleans())
def test_fuzz_documents_only_raise_config_errors(document, as_yaml):
    CASES["fuzz_documents"] += 1
    text = yaml.safe_dump(document, allow_unicode=True) if as_yaml else json.dumps(document)
    try:
        source = load_bytes(text.encode("utf-8", "surrogatepass"), "fuzz", yaml_syntax=as_yaml)
        validate(source)
    except ConfigError as exc:
        assert all(str(d).startswith("fuzz:") for d in exc.diagnostics)
        assert all("\n" not in str(d) for d in exc.diagnostics)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_fuzz_bytes_only_raise_config_errors(raw, as_yaml):
    CASES["fuzz_bytes"] += 1
    with contextlib.suppress(ConfigError):
        validate(load_bytes(raw, "fuzz", yaml_syntax=as_yaml))


def test_lone_surrogates_are_refused_not_crashed_on(tmp_path):
    raw = b'{"base_model": "x", "chat_template": "auto", "system_prompt": "a\\ud800b"}'
    assert [str(d) for d in validate(load_bytes(raw, "s.json"))] == [
        "s.json:1:46: $.system_prompt: holds \\ud800, half of a UTF-16 surrogate pair, which is not text"
    ]
    with pytest.raises(ConfigError):
        compile_config(write_config(tmp_path, raw, "s.json"))


def test_wide_characters_count_two_columns(tmp_path):
    """Found by the property test: ruff measures lines in display columns, where an emoji or a CJK
    character takes two, so wrapping by character count let a docstring line reach 102."""
    config = {
        **MINIMAL,
        "base_model": "ÖóIW\U000c3653\x02¶\\x00😀õÔ\x8b\U0003c27a½n${HOME}\x03Å eOKO0" * 3,
        "system_prompt": "漢字かな😀" * 40,
        "notes": ["表" * 150, "🙂 " * 80],
    }
    compiled = compile_config(write_config(tmp_path, config))
    script = tmp_path / "s.py"
    script.write_text(compiled.text, encoding="utf-8")
    proc = subprocess.run(
        [ruff_binary(), "check", "--quiet", "--config", str(REPO / "pyproject.toml"), str(script)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout
    assert constants(compiled.text)["SYSTEM_PROMPT"] == config["system_prompt"]
