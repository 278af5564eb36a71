"""A model is known by its own files: the config.json (and chat template) of a local folder or of
a model in the local Hugging Face cache decides its family, whatever the folder is called; the
name decides only when no config.json is at hand. The script then depends on the config and on
what config.json says, and its header names both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_config
from mhgen.families import identify
from mhgen.model_files import find
from mhgen.pipeline import compile_config
from mhgen.vram import SHAPES, shape_from_config

# config.json fields of the real models (their Hub repositories), as far as mhgen reads them
REAL_CONFIGS = {
    "gpt-oss-20b": {
        "model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "hidden_size": 2880,
        "num_hidden_layers": 24, "num_attention_heads": 64, "num_key_value_heads": 8,
        "head_dim": 64, "intermediate_size": 2880, "vocab_size": 201088, "num_local_experts": 32,
        "num_experts_per_tok": 4, "tie_word_embeddings": False,
        "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["router"]},
    },
    "qwen3-8b": {
        "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 4096,
        "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "intermediate_size": 12288, "vocab_size": 151936,
        "tie_word_embeddings": False,
    },
    "qwen3-0.6b": {
        "model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
        "intermediate_size": 3072, "vocab_size": 151936, "tie_word_embeddings": True,
    },
    "qwen3-coder-30b-a3b-instruct": {
        "model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 2048,
        "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4,
        "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
        "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936,
        "tie_word_embeddings": False,
    },
    "llama-3.1-8b-instruct": {
        "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
        "vocab_size": 128256, "tie_word_embeddings": False,
    },
    "mistral-7b-instruct-v0.3": {
        "model_type": "mistral", "hidden_size": 4096, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "intermediate_size": 14336, "vocab_size": 32768, "tie_word_embeddings": False,
    },
}  # fmt: skip
# enough of each official template to tell families apart (the full texts: test_chat_formats.py)
QWEN3_TEMPLATE = "{%- if message.role == 'assistant' %}<think>\n{{ reasoning_content }}\n</think>"
CODER_TEMPLATE = "{%- for message in messages %}<|im_start|>{{ message.role }}\n<tool_call>"
LLAMA3_TEMPLATE = "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"


def model_folder(path: Path, config: dict, template: str | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    if template is not None:
        (path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return path


def compiled_for(tmp_path, base_model: str, **settings):
    config = {"base_model": base_model, "chat_template": "auto", "system_prompt": "", **settings}
    return compile_config(write_config(tmp_path, config, "training-mine.json"))


def header(text: str) -> str:
    return " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))


def test_a_gpt_oss_folder_with_any_name_gets_the_gpt_oss_script(tmp_path):
    folder = model_folder(tmp_path / "models" / "oss20b", REAL_CONFIGS["gpt-oss-20b"])
    compiled = compiled_for(tmp_path, str(folder), load_in_4bit=True)
    plan, text = compiled.plan, compiled.text
    assert (plan.family.name, plan.chat_format) == ("gpt-oss", "harmony")
    assert plan.values["attn_implementation"] == "eager"  # gpt-oss refuses sdpa at load
    assert plan.values["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert "class ExpertsNF4(" in text  # its experts are quantized, not left in 16 bits
    sha = plan.identity.config_sha256
    assert sha == __import__("hashlib").sha256((folder / "config.json").read_bytes()).hexdigest()
    assert (
        f"whose family, gpt-oss, comes from its config.json (model_type gpt_oss, sha256 {sha})."
        in header(text)
    )
    assert compiled.warnings == ()


def test_a_folder_named_otherwise_keeps_the_thinking_block_and_says_so(tmp_path, cli):
    # (no model name in this test's own name: pytest puts it in tmp_path, which is searched)
    folder = model_folder(tmp_path / "qwen-tmpl", REAL_CONFIGS["qwen3-8b"], QWEN3_TEMPLATE)
    compiled = compiled_for(tmp_path, str(folder))
    assert compiled.plan.family.name == "qwen3"  # the name alone says qwen2
    assert compiled.plan.format_template == "formats/chatml-qwen3.py.j2"
    (warning,) = [str(w) for w in compiled.warnings]
    assert warning.endswith(
        "$.base_model: warning: the name suggests qwen2, but the model's config.json (in a local "
        'folder) says model_type "qwen3": it is trained as qwen3'
    )
    code, out, _ = cli("explain", str(tmp_path / "training-mine.json"))
    assert code == 0
    assert out.splitlines()[0] == (
        f"base_model: {str(folder)!r} is family qwen3: its config.json in a local folder says "
        "model_type 'qwen3' and its chat template tells which (its name alone would suggest qwen2)"
    )


@pytest.mark.parametrize(
    ("config", "template", "family", "fmt"),
    [
        ("qwen3-coder-30b-a3b-instruct", CODER_TEMPLATE, "qwen3-coder", "formats/chatml.py.j2"),
        ("qwen3-coder-30b-a3b-instruct", QWEN3_TEMPLATE, "qwen3-moe", "formats/chatml-qwen3.py.j2"),
        ("llama-3.1-8b-instruct", LLAMA3_TEMPLATE, "llama3", "formats/llama3.py.j2"),
        ("llama-3.1-8b-instruct", None, "llama3", "formats/llama3.py.j2"),  # by its vocabulary
        ("mistral-7b-instruct-v0.3", None, "mistral", "formats/mistral.py.j2"),
        # a Qwen3 whose own template has no thinking block (the -2507 Instruct models)
        ("qwen3-8b", CODER_TEMPLATE, "qwen3", "formats/chatml.py.j2"),
    ],
)
def test_families_that_share_a_model_type_are_told_apart(tmp_path, config, template, family, fmt):
    folder = model_folder(tmp_path / "m", REAL_CONFIGS[config], template)
    plan = compiled_for(tmp_path, str(folder)).plan
    assert (plan.family.name, plan.format_template) == (family, fmt)


def test_llama_without_a_template_and_a_small_vocabulary_is_llama_2(tmp_path):
    config = {**REAL_CONFIGS["llama-3.1-8b-instruct"], "vocab_size": 32000}
    plan = compiled_for(tmp_path, str(model_folder(tmp_path / "m", config))).plan
    assert (plan.family.name, plan.chat_format) == ("llama2", "llama")


def test_an_unknown_family_lets_transformers_choose_the_attention(tmp_path):
    folder = model_folder(tmp_path / "m", {"model_type": "phi3", "hidden_size": 64})
    compiled = compiled_for(tmp_path, str(folder))
    assert compiled.plan.family.name == "unknown"
    assert "ATTN_IMPLEMENTATION = None  # auto: transformers chooses" in compiled.text
    assert 'LORA_TARGET_MODULES = "all-linear"' in compiled.text
    # an unknown model may be an MoE whose routers PEFT's all-linear adapts: their loss stays
    assert "router_aux_loss_coef" not in compiled.text


def cache_with(tmp_path, repo_id: str, config: dict, monkeypatch) -> Path:
    cache = tmp_path / "hf-cache"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    model_folder(repo / "snapshots" / "abc123", config)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return repo


def test_a_cached_hub_model_is_known_by_its_config_json(tmp_path, monkeypatch):
    cache_with(tmp_path, "someone/house-model", REAL_CONFIGS["gpt-oss-20b"], monkeypatch)
    plan = compiled_for(tmp_path, "someone/house-model").plan
    assert plan.family.name == "gpt-oss" and plan.identity.where == "the Hugging Face cache"


def test_a_cached_model_that_its_name_already_names_gets_the_same_script(tmp_path, monkeypatch):
    """What a machine happens to have downloaded does not change a script its name decides."""
    without = compiled_for(tmp_path, "Qwen/Qwen3-8B").text
    cache_with(tmp_path, "Qwen/Qwen3-8B", REAL_CONFIGS["qwen3-8b"], monkeypatch)
    assert find("Qwen/Qwen3-8B") is not None
    assert compiled_for(tmp_path, "Qwen/Qwen3-8B").text == without


def test_the_script_depends_on_the_config_json_not_on_where_it_is(tmp_path):
    # two places whose paths are as long (a longer one could wrap the docstring differently)
    a = model_folder(tmp_path / "here" / "model", REAL_CONFIGS["qwen3-8b"])
    b = model_folder(tmp_path / "away" / "model", REAL_CONFIGS["qwen3-8b"])
    text_a = compiled_for(tmp_path, str(a)).text.replace(str(a), "MODEL")
    text_b = compiled_for(tmp_path, str(b)).text.replace(str(b), "MODEL")
    # only the base_model path, in the header comment, and the hashes of the config differ
    differing = [x for x, y in zip(text_a.splitlines(), text_b.splitlines(), strict=True) if x != y]
    assert differing and all(x.startswith(("# ", "CONFIG_SHA256 = ")) for x in differing)
    changed = {**REAL_CONFIGS["qwen3-8b"], "rope_theta": 1000000.0}
    (b / "config.json").write_text(json.dumps(changed))
    assert (
        identify(str(b), find(str(b))).config_sha256 != identify(str(a), find(str(a))).config_sha256
    )


@pytest.mark.parametrize("name", sorted(REAL_CONFIGS))
def test_plan_shapes_from_config_json_are_the_table_s(name):
    assert shape_from_config(REAL_CONFIGS[name]) == SHAPES[name]


def test_plan_reads_a_local_model_s_shapes(tmp_path, cli):
    folder = model_folder(tmp_path / "my-oss", REAL_CONFIGS["gpt-oss-20b"])
    config = write_config(
        tmp_path,
        {
            "base_model": str(folder),
            "chat_template": "auto",
            "system_prompt": "",
            "max_seq_length": 1024,
        },
        "training-mine.json",
    )
    code, out, _ = cli("plan", str(config), "--gpu-memory", "16")
    assert code == 0
    assert out.splitlines()[0].endswith("(shapes from the model's config.json)")
    assert "16.0 GB GPU: fits" in out
