"""Loading: line:column of every key in JSON and YAML, YAML 1.2 scalars, same data either way."""

from __future__ import annotations

from conftest import write_config
from mhgen.load import load_file
from mhgen.resolve import canonical_sha256

JSON_TEXT = """{
  "base_model": "Qwen/Qwen3-8B",
    "notes": ["a", {"x": 1}],
  "learning_rate": 2e-4
}
"""
YAML_TEXT = """# comment
base_model: Qwen/Qwen3-8B
notes:
  - a
  - x: 1
learning_rate: 2e-4
"""


def test_json_positions(tmp_path):
    source = load_file(write_config(tmp_path, JSON_TEXT))
    assert source.positions[("base_model",)] == (2, 3)
    assert source.positions[("notes",)] == (3, 5)
    assert source.positions[("notes", 0)] == (3, 15)
    assert source.positions[("notes", 1, "x")] == (3, 21)
    assert source.positions[("learning_rate",)] == (4, 3)
    assert source.where(("notes", 1, "missing")) == (3, 20)  # the object holding it
    assert source.where(()) == (1, 1)


def test_yaml_positions_and_yaml_1_2_numbers(tmp_path):
    source = load_file(write_config(tmp_path, YAML_TEXT, "c.yaml"))
    assert source.positions[("base_model",)] == (2, 1)
    assert source.positions[("notes", 0)] == (4, 5)
    assert source.positions[("notes", 1, "x")] == (5, 5)
    assert source.data["learning_rate"] == 2e-4  # PyYAML's YAML 1.1 rules would give "2e-4"


def test_json_and_yaml_give_the_same_data_and_hash(tmp_path):
    a = load_file(write_config(tmp_path, JSON_TEXT))
    b = load_file(write_config(tmp_path, YAML_TEXT, "c.yaml"))
    assert a.data == b.data
    assert canonical_sha256(a.data) == canonical_sha256(b.data)


def test_yaml_keeps_dates_and_words_as_strings(tmp_path):
    text = "d: 2025-08-05\nw: yes\nn: null\nt: true\no: 010\nh: 0x10\ne: ''\n"
    data = load_file(write_config(tmp_path, text, "c.yml")).data
    assert data == {"d": "2025-08-05", "w": "yes", "n": None, "t": True, "o": 10, "h": 16, "e": ""}


def test_bom_is_accepted(tmp_path):
    data = load_file(write_config(tmp_path, b"\xef\xbb\xbf" + JSON_TEXT.encode())).data
    assert data["base_model"] == "Qwen/Qwen3-8B"


def test_canonical_hash_ignores_order_layout_and_schema_key():
    a = {"b": 1, "a": [1, 2], "$schema": "x"}
    assert canonical_sha256(a) == canonical_sha256({"a": [1, 2], "b": 1})
    assert canonical_sha256(a) != canonical_sha256({"a": [2, 1], "b": 1})
