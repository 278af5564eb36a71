"""--merge of an adapter that adapts a mixture-of-experts model's experts (issue 31).

The runs train tiny gpt-oss and Qwen3-MoE models in 4 bits with LoRA on attention and on every
expert's gate_up and down, then merge into the 16-bit checkpoint: Qwen3-MoE's holds each
expert's own linear layers, gpt-oss's the fused (experts x in x out) stacks. The oracle is PEFT:
transformers' own model with the adapter loaded by PeftModel, unmerged. For gpt-oss's MXFP4
checkpoints the merge writes 16 bits (exact) or, with --merge-format mxfp4, MXFP4 again: checked
code for code against an MXFP4 encoding written here from the format's definition, and the
logits against the model those codes hold.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from test_moe_nf4 import mxfp4_decode, mxfp4_encode

from conftest import require, write_config
from mhgen.pipeline import compile_config
from runs import run, script_for

require("trl", "peft", "bitsandbytes")

# family, chat format, folder name (detection works from it)
MOE = {
    "gpt-oss": ("harmony", "gpt-oss-20b"),
    "qwen3-coder": ("chatml", "Qwen3-Coder-30B-A3B-Instruct"),
}
SETTINGS = {
    "max_steps": 4, "learning_rate": 0.05, "lora_dropout": 0.0, "logging_steps": 1, "max_seq_length": 512,
    "load_in_4bit": True, "lora_target_modules": ["q_proj", "v_proj", "gate_up", "down"],
}  # fmt: skip
EXPERT_NAMES = ("experts.gate_up_proj", "experts.down_proj")
# config.json's quantization_config of openai/gpt-oss-20b (and -120b)
GPT_OSS_20B_QUANTIZATION = {
    "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head",
    ],
    "quant_method": "mxfp4",
}  # fmt: skip
TOLERANCE = 1e-5  # float32 logits of the same weights, summed in another order


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """family -> (tiny base model folder, output folder, the script's stdout), each run trained
    with LoRA on its experts and --merge."""
    from mhgen import tiny

    out = {}
    for family, (fmt, name) in MOE.items():
        root = tmp_path_factory.mktemp(family)
        model = tiny.build(family, fmt, root / name, seed=3)
        data = root / "train.jsonl"
        rows = [
            [{"role": "user", "content": f"Count to {i}."},
             {"role": "assistant", "content": " ".join(map(str, range(i)))}]
            for i in range(2, 18)
        ]  # fmt: skip
        data.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
        script = script_for(root / "run", model, data, **SETTINGS)
        proc = run(script, "--merge")
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[family] = (model, script.parent / "out", proc.stdout)
    return out


def ids():
    import torch

    return torch.tensor([[5, 17, 42, 99, 7, 250, 3, 64, 128, 11, 77, 200]])


def logits(model):
    import torch

    with torch.no_grad():
        return model.eval()(ids()).logits


def loaded(folder):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


def adapted(base_dir, out_dir, experts: bool = True):
    """The base model with the adapter loaded by PEFT, unmerged; with experts=False its experts'
    LoRA is zeroed (what a merge that dropped the experts' changes would give)."""
    import torch
    from peft import PeftModel

    model = PeftModel.from_pretrained(loaded(base_dir), out_dir)
    wrappers = [m for m in model.modules() if type(m).__name__ == "ParamWrapper"]
    assert len(wrappers) == 2 * model.config.num_hidden_layers  # gate_up and down, each layer
    if not experts:
        with torch.no_grad():
            for wrapper in wrappers:
                wrapper.lora_B["default"].weight.zero_()
    return model


def merged_tensors(folder) -> dict:
    from safetensors.torch import load_file

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    tensors = {}
    for file in sorted(set(index["weight_map"].values())):
        tensors |= load_file(folder / file)
    assert tensors.keys() == index["weight_map"].keys()
    return tensors


def base_tensors(model_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def script_module(root, model_dir, name: str):
    """The emitted script of the trained runs' config on ``model_dir``, imported."""
    config = {
        "base_model": str(model_dir), "chat_template": "auto", "system_prompt": "",
        "dtype": "float32", **SETTINGS,
    }  # fmt: skip
    compiled = compile_config(write_config(root, config, f"training-{name}.json"))
    path = root / compiled.plan.script_name
    path.write_text(compiled.text)
    spec = importlib.util.spec_from_file_location(f"emitted_{name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_mxfp4(model_dir, folder):
    """A copy of a tiny 16-bit gpt-oss with its experts in MXFP4, as openai/gpt-oss-20b ships
    them: (blocks, scales) along each expert's input dimension, and its quantization_config."""
    from safetensors.torch import save_file

    shutil.copytree(model_dir, folder)
    tensors = base_tensors(folder)
    for name in [n for n in tensors if n.endswith(EXPERT_NAMES)]:
        blocks, scales = mxfp4_encode(tensors.pop(name).transpose(1, 2))
        tensors[name + "_blocks"], tensors[name + "_scales"] = blocks, scales
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": ["router"]}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("family", list(MOE))
def test_the_merged_model_gives_the_adapted_model_s_logits(trained, family):
    import torch

    model, out, stdout = trained[family]
    expected = logits(adapted(model, out))
    torch.testing.assert_close(logits(loaded(out / "merged")), expected, rtol=0, atol=TOLERANCE)
    # the experts' part of the adapter moves the logits far beyond the tolerance: a merge that
    # dropped it would fail above
    without_experts = logits(adapted(model, out, experts=False))
    assert (without_experts - expected).abs().max() > 1000 * TOLERANCE
    layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
    pairs = layers * (2 + 2)  # q_proj, v_proj; the experts' gate_up and down
    assert f"merged {pairs} LoRA pairs into {model} in float32: out/merged, " in stdout


@pytest.mark.parametrize("family", list(MOE))
def test_the_merged_checkpoint_keeps_the_base_s_names_and_layout(trained, family):
    """Qwen3-MoE's per-expert linear layers stay per expert, gpt-oss's fused stacks fused;
    every expert weight moved (each expert was routed some tokens), nothing else did but the
    adapted attention."""
    import torch

    model, out, _ = trained[family]
    base, merged = base_tensors(model), merged_tensors(out / "merged")
    assert merged.keys() == base.keys()
    moved = {n for n in base if not torch.equal(base[n], merged[n])}
    assert all(merged[n].shape == base[n].shape and merged[n].dtype == torch.float32 for n in base)
    if family == "gpt-oss":
        experts = {n for n in base if n.endswith(EXPERT_NAMES)}
        for name in experts:  # every expert of the stack
            assert (merged[name] - base[name]).flatten(1).abs().amax(1).min() > 0, name
    else:
        experts = {n for n in base if ".mlp.experts." in n}
    attention = {n for n in base if n.endswith(("q_proj.weight", "v_proj.weight"))}
    assert experts and moved == experts | attention


def test_the_merged_model_generates(trained):
    import torch

    _, out, _ = trained["qwen3-coder"]
    model = loaded(out / "merged")
    with torch.no_grad():
        generated = model.eval().generate(ids(), max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, ids().shape[1] + 4)


def test_gpt_oss_s_mxfp4_experts_merge_into_16_bits(trained, tmp_path, capsys):
    """The default format: MXFP4 experts dequantized, changed, written in DTYPE (exact), and
    quantization_config dropped; transformers loads the merged folder as a 16-bit model."""
    import torch

    model, out, _ = trained["gpt-oss"]
    mxfp4 = as_mxfp4(model, tmp_path / "gpt-oss-20b-mxfp4")
    merged_dir = tmp_path / "adapter"
    shutil.copytree(out, merged_dir, ignore=shutil.ignore_patterns("merged", "checkpoint-*"))
    script = script_module(tmp_path, mxfp4, "gpt-oss-mxfp4")
    script.merge_adapter(merged_dir, str(mxfp4), "float32", "dtype")
    merged = merged_tensors(merged_dir / "merged")
    assert not any(name.endswith(("_blocks", "_scales")) for name in merged)
    assert all(merged[name].dtype == torch.float32 for name in merged)
    config = json.loads((merged_dir / "merged" / "config.json").read_text())
    assert "quantization_config" not in config
    assert "the experts" not in capsys.readouterr().out
    expected = logits(adapted(mxfp4, merged_dir))  # transformers dequantizes MXFP4 itself
    torch.testing.assert_close(
        logits(loaded(merged_dir / "merged")), expected, rtol=0, atol=TOLERANCE
    )


@pytest.mark.parametrize("base", ["16-bit", "mxfp4"])
def test_merge_format_mxfp4_writes_gpt_oss_s_own_layout(trained, tmp_path, base):
    """--merge-format mxfp4: the merged experts (PEFT's own merge of the adapter) in MXFP4,
    code for code as the encoding written from the format's definition gives them, with
    openai/gpt-oss-20b's quantization_config; the folder loads in transformers and gives the
    logits of the model those codes hold."""
    import torch
    from peft import PeftModel

    model, out, _ = trained["gpt-oss"]
    folder = model if base == "16-bit" else as_mxfp4(model, tmp_path / "gpt-oss-20b-mxfp4")
    merged_dir = tmp_path / "adapter"
    shutil.copytree(out, merged_dir, ignore=shutil.ignore_patterns("merged", "checkpoint-*"))
    script = script_module(tmp_path, folder, "gpt-oss-" + base)
    script.merge_adapter(merged_dir, str(folder), "float32", "mxfp4")
    merged = merged_tensors(merged_dir / "merged")
    reference = PeftModel.from_pretrained(loaded(folder), merged_dir).merge_and_unload()
    weights = reference.state_dict()
    decoded = {}
    for name in [n for n in weights if n.endswith(EXPERT_NAMES)]:
        blocks, scales = mxfp4_encode(weights[name].transpose(1, 2))
        assert torch.equal(merged[name + "_scales"], scales), name
        decoded[name] = mxfp4_decode(merged[name + "_blocks"], scales).transpose(1, 2)
        # the same values (this encoding writes a small negative's zero as +0, the merge as -0);
        # one may differ where PEFT's sum and the merge's fall on either side of a midpoint
        same = (decoded[name] == mxfp4_decode(blocks, scales).transpose(1, 2)).float().mean()
        assert same > 0.999, (name, same)
        assert name not in merged
    config = json.loads((merged_dir / "merged" / "config.json").read_text())
    expected_config = (
        GPT_OSS_20B_QUANTIZATION  # a 16-bit checkpoint gets gpt-oss-20b's own
        if base == "16-bit"
        else {"quant_method": "mxfp4", "modules_to_not_convert": ["router"]}  # the base's, kept
    )
    assert config["quantization_config"] == expected_config
    # what the codes hold: the reference with its experts replaced by them
    reference.load_state_dict(decoded, strict=False)
    torch.testing.assert_close(
        logits(loaded(merged_dir / "merged")), logits(reference), rtol=0, atol=TOLERANCE
    )


def test_merge_format_is_a_gpt_oss_option_that_goes_with_merge(trained, tmp_path):
    gpt_oss = script_for(tmp_path / "gpt-oss", trained["gpt-oss"][0], tmp_path / "none.jsonl")
    proc = run(gpt_oss, "--merge-format", "mxfp4")
    assert proc.returncode == 2 and "error: --merge-format mxfp4 goes with --merge" in proc.stderr
    qwen = script_for(tmp_path / "qwen", trained["qwen3-coder"][0], tmp_path / "none.jsonl")
    proc = run(qwen, "--merge", "--merge-format", "mxfp4")
    assert proc.returncode == 2 and "unrecognized arguments: --merge-format" in proc.stderr
    module = script_module(tmp_path, trained["qwen3-coder"][0], "qwen3-coder-mxfp4")
    with pytest.raises(SystemExit, match="--merge-format mxfp4 is gpt-oss's format"):
        module.merge_adapter(trained["qwen3-coder"][1], module.BASE_MODEL, "float32", "mxfp4")


def test_the_disk_check_counts_the_merged_model_in_its_format(trained, tmp_path):
    """The plan's estimate of what --merge writes (DISK_BYTES, from the shapes) is what it wrote:
    the adapted experts in float32 here, or in MXFP4 with --merge-format mxfp4."""
    from mhgen.vram import DISK_MARGIN

    for family, (_, out, _) in trained.items():
        plan = compile_config(out.parent / "config.json").plan
        written = sum(t.nbytes for t in merged_tensors(out / "merged").values())
        assert abs(plan.merged_bytes - DISK_MARGIN - written) < 0.03 * written, family
    model, out, _ = trained["gpt-oss"]
    copy = tmp_path / "adapter"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("merged", "checkpoint-*"))
    script_module(tmp_path, model, "gpt-oss-size").merge_adapter(
        copy, str(model), "float32", "mxfp4"
    )
    written = sum(t.nbytes for t in merged_tensors(copy / "merged").values())
    plan = compile_config(out.parent / "config.json").plan
    assert plan.merged_mxfp4_bytes < plan.merged_bytes
    assert abs(plan.merged_mxfp4_bytes - DISK_MARGIN - written) < 0.03 * written
