"""The schema is a valid draft 2020-12 schema, the shipped configs follow it, and its defaults are
the ones the resolver uses."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import ETC, MINIMAL, REPO, write_config
from mhgen.load import load_file
from mhgen.resolve import resolve
from mhgen.validate import validate

SCHEMA = json.loads((REPO / "schema" / "training.schema.json").read_text())
CONFIGS = sorted(ETC.glob("training*.json"))
SEED_FIELDS = [
    "base_model", "chat_template", "system_prompt", "max_seq_length", "lora_rank", "lora_alpha",
    "num_train_epochs", "learning_rate", "per_device_train_batch_size",
    "gradient_accumulation_steps", "load_in_4bit", "dtype", "use_gradient_checkpointing", "notes",
]  # fmt: skip


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["additionalProperties"] is False


def test_every_seed_field_and_run_field_is_described_with_an_example_or_default():
    props = SCHEMA["properties"]
    for name in SEED_FIELDS + ["dataset_path", "output_dir", "lora_dropout", "seed", "eval_split"]:
        assert name in props, name
    for name, spec in props.items():
        assert spec.get("description"), name
    assert props["chat_template"]["enum"] == [
        "auto",
        "harmony",
        "chatml",
        "llama",
        "llama3",
        "mistral",
    ]
    assert SCHEMA["required"] == ["base_model", "chat_template", "system_prompt"]


@pytest.mark.parametrize("name", sorted(SCHEMA["properties"]))
def test_each_default_is_valid_for_its_own_field(name):
    spec = SCHEMA["properties"][name]
    if "default" in spec:
        jsonschema.Draft202012Validator(spec).validate(spec["default"])
    for example in spec.get("examples", []):
        jsonschema.Draft202012Validator(spec).validate(example)


def test_schema_defaults_are_the_resolvers(tmp_path):
    plan = resolve(load_file(write_config(tmp_path, MINIMAL)))
    for name, spec in SCHEMA["properties"].items():
        if "default" in spec and name not in MINIMAL and spec["default"] != "auto":
            assert plan.values[name] == spec["default"], name
            assert plan.origins[name] == "default", name


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_are_valid_without_warnings(path):
    assert validate(load_file(path)) == []
    data = json.loads(path.read_text())
    assert data["$schema"] == "../schema/training.schema.json"
    assert set(data["notes"]) >= {"model", "format", "hardware"}


def test_active_config_is_gpt_oss():
    assert (ETC / "training.json").read_bytes() == (ETC / "training-gpt-oss-20b.json").read_bytes()


def test_shipped_configs_fit_the_hardware_the_seed_names():
    gpt = json.loads((ETC / "training-gpt-oss-20b.json").read_text())
    qwen = json.loads((ETC / "training-qwen3-8b.json").read_text())
    coder = json.loads((ETC / "training-qwen3-coder-30b.json").read_text())
    assert "16 GB" in gpt["notes"]["hardware"] and gpt["load_in_4bit"]
    assert "16-24 GB" in qwen["notes"]["hardware"] and qwen["load_in_4bit"]
    assert "80 GB" in coder["notes"]["hardware"]
    # one-GPU configs keep the per-step activation footprint small: tokens per micro-batch
    assert gpt["per_device_train_batch_size"] * gpt["max_seq_length"] <= 2048
    assert qwen["per_device_train_batch_size"] * qwen["max_seq_length"] <= 4096
    assert coder["base_model"] == "unsloth/Qwen3-Coder-30B-A3B-Instruct"
