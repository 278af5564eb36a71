"""4-bit experts of the MoE families (gpt-oss, Qwen3-MoE), with the emitted script's own functions.

The script quantizes every decoder weight to NF4 itself, the experts' fused 3-D weights too (which
bitsandbytes' loader leaves in 16 bits). Checked here on tiny local models, in fp32 on the CPU:
- the quantized model computes exactly what transformers' own model computes with the same
  (dequantized) weights, so routing, activation and weight layout are right;
- against the original weights it differs by what NF4 rounding implies, and no more;
- no 16-bit expert weight is left, and the bytes held are what `mhgen plan` counts;
- LoRA on the experts (optional) wraps each expert's NF4 layer and gets gradients.
Training, saving and reloading the adapter onto the original model: tests/test_train_e2e.py.
"""

from __future__ import annotations

import importlib.util

import pytest

from conftest import require, write_config
from mhgen.pipeline import compile_config
from mhgen.vram import NF4_BYTES
from mhgen.write import write

require("bitsandbytes")

# family, chat format, folder name (detection works from it), transposed (in x out) expert weights
MOE = [
    ("gpt-oss", "harmony", "gpt-oss-20b", True),
    ("qwen3-coder", "chatml", "Qwen3-Coder-30B-A3B-Instruct", False),
]
IDS = [m[0] for m in MOE]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """family -> (tiny model folder, the emitted script imported as a module)."""
    from mhgen import tiny

    out = {}
    for family, fmt, name, _ in MOE:
        root = tmp_path_factory.mktemp(family)
        model_dir = tiny.build(family, fmt, root / name, seed=1)
        config = {
            "base_model": str(model_dir),
            "chat_template": "auto",
            "system_prompt": "",
            "load_in_4bit": True,
        }
        compiled = compile_config(write_config(root, config))
        script = root / compiled.plan.script_name
        write(script, compiled.text)
        spec = importlib.util.spec_from_file_location(f"emitted_{family.replace('-', '_')}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out[family] = (model_dir, module)
    return out


def load(model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def quantized(built, family):
    import torch

    model_dir, script = built[family]
    model = load(model_dir)
    script.quantize_to_nf4(model, "cpu", torch.float32)
    return model


def dequantized(layer):
    """The fp32 weight (out x in) an NF4 Linear4bit computes with."""
    import bitsandbytes.functional as F

    return F.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()


def tokens():
    import torch

    return torch.randint(0, 200, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("family", "fmt", "name", "transposed"), MOE, ids=IDS)
def test_nf4_model_computes_what_transformers_computes_with_the_same_weights(
    built, family, fmt, name, transposed
):
    import torch

    nf4 = quantized(built, family)
    reference = load(built[family][0])  # transformers' own modules, given the dequantized values
    with torch.no_grad():
        for mine, theirs in zip(nf4.model.layers, reference.model.layers, strict=True):
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                getattr(theirs.self_attn, proj).weight.copy_(
                    dequantized(getattr(mine.self_attn, proj))
                )
            for e, expert in enumerate(mine.mlp.experts):
                for key in ("gate_up", "down"):
                    weight = dequantized(expert[key])
                    getattr(theirs.mlp.experts, f"{key}_proj")[e].copy_(
                        weight.T if transposed else weight
                    )
        ids = tokens()
        expected, actual = reference(ids).logits, nf4(ids).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("family", "fmt", "name", "transposed"), MOE, ids=IDS)
def test_nf4_model_differs_from_the_original_by_nf4_rounding_only(
    built, family, fmt, name, transposed
):
    import torch

    original, nf4 = load(built[family][0]), quantized(built, family)
    errors = []  # relative error of every expert weight NF4 rounding gives
    for mine, theirs in zip(nf4.model.layers, original.model.layers, strict=True):
        for e, expert in enumerate(mine.mlp.experts):
            for key in ("gate_up", "down"):
                weight = getattr(theirs.mlp.experts, f"{key}_proj")[e]
                weight = weight.T if transposed else weight
                errors.append(((dequantized(expert[key]) - weight).norm() / weight.norm()).item())
    weight_error = max(errors)
    assert min(errors) > 0.03 and weight_error < 0.2  # 16 levels scaled per block of 64
    with torch.no_grad():
        ids = tokens()
        exact, approx = original(ids).logits, nf4(ids).logits
    error = ((approx - exact).norm() / exact.norm()).item()
    # independent rounding errors of the 6 NF4 matmuls a token meets per layer add in quadrature
    matmuls = 6 * len(nf4.model.layers)
    assert weight_error / 10 < error < matmuls**0.5 * weight_error, (error, weight_error)


@pytest.mark.parametrize(("family", "fmt", "name", "transposed"), MOE, ids=IDS)
def test_no_16_bit_decoder_weight_is_left_and_bytes_match_the_plan(
    built, family, fmt, name, transposed
):
    import bitsandbytes as bnb
    import torch

    original, nf4 = load(built[family][0]), quantized(built, family)
    assert not [n for n, p in nf4.named_parameters() if p.dim() == 3]  # fused experts are gone
    weights = 0
    for layer in original.model.layers:
        weights += sum(
            getattr(layer.self_attn, p).weight.numel()
            for p in ("q_proj", "k_proj", "v_proj", "o_proj")
        )
        weights += layer.mlp.experts.gate_up_proj.numel() + layer.mlp.experts.down_proj.numel()
    layers = [m for m in nf4.model.layers.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert all(m.weight.dtype == torch.uint8 for m in layers)
    assert sum(m.weight.numel() * 2 for m in layers) == weights  # two 4-bit weights per byte
    held = 0  # packed weights + 8-bit absmax per block of 64 + fp32 absmax per 256 blocks
    for m in layers:
        state = m.weight.quant_state
        held += m.weight.numel() + state.absmax.numel() * state.absmax.element_size()
        held += state.state2.absmax.numel() * state.state2.absmax.element_size()
    assert held == pytest.approx(weights * NF4_BYTES, rel=0.02)


@pytest.mark.parametrize(("family", "fmt", "name", "transposed"), MOE, ids=IDS)
def test_lora_on_the_experts_wraps_each_nf4_expert_and_trains(built, family, fmt, name, transposed):
    import torch
    from peft import LoraConfig, get_peft_model

    nf4 = quantized(built, family)
    targets = ["q_proj", "v_proj", "gate_up", "down"]
    model = get_peft_model(nf4, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    experts = model.base_model.model.model.layers[0].mlp.experts
    assert type(experts[0]["gate_up"]).__module__ == "peft.tuners.lora.bnb"  # 4-bit LoRA
    for expert in experts:
        torch.nn.init.normal_(expert["down"].lora_B["default"].weight, std=0.02)
    ids = tokens()
    model.train()
    model(ids, labels=ids).loss.backward()
    hit = [e for e in experts if e["down"].lora_A["default"].weight.grad is not None]
    assert hit and all(e["down"].lora_A["default"].weight.grad.abs().sum() > 0 for e in hit)
    frozen = [p for n, p in model.named_parameters() if "lora_" not in n]
    assert not any(p.requires_grad for p in frozen)
