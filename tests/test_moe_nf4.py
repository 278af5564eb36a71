"""4-bit experts of the MoE families (gpt-oss, Qwen3-MoE), with the emitted script's own functions.

The script loads the checkpoint layer by layer and keeps each expert projection of a layer (all
experts' gate_up, all experts' down) as ONE NF4 buffer, multiplied by a grouped GEMM. Checked here
on tiny local models, in fp32 on the CPU, against independent references:
- the buffers are bitsandbytes' own NF4 quantization of the checkpoint's weights (so the streaming
  load gives what loading everything and quantizing would), from a single file, a sharded one,
  and gpt-oss's MXFP4 checkpoint (decoded here from the format's definition);
- the model's outputs AND input gradients equal transformers' own model running on the
  dequantized weights (routing, activation, layout, the hand-written backward);
- against the original weights it differs by NF4's rounding, and no more;
- the bytes held are what `mhgen plan` counts, and loading reads one layer at a time;
- LoRA on the experts trains, and its adapter loads with PEFT onto transformers' fused experts.
Training, saving and resuming end to end: tests/test_train_e2e.py.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from conftest import require, write_config
from mhgen.pipeline import compile_config
from mhgen.vram import NF4_BYTES
from mhgen.write import write

require("bitsandbytes")

# family, chat format, folder name (detection works from it), transformers' expert layout is
# (experts x in x out) for gpt-oss and (experts x out x in) for Qwen3-MoE
MOE = [
    ("gpt-oss", "harmony", "gpt-oss-20b"),
    ("qwen3-coder", "chatml", "Qwen3-Coder-30B-A3B-Instruct"),
]
IDS = [m[0] for m in MOE]
PROJECTIONS = {"gate_up": "gate_up_proj", "down": "down_proj"}


def emitted(root, model_dir, name, **settings):
    """The script of a 4-bit config for ``model_dir``, imported as a module."""
    config = {
        "base_model": str(model_dir), "chat_template": "auto", "system_prompt": "",
        "load_in_4bit": True, "dtype": "float32", **settings,
    }  # fmt: skip
    compiled = compile_config(write_config(root, config, f"training-{name}.json"))
    script = root / compiled.plan.script_name
    write(script, compiled.text)
    spec = importlib.util.spec_from_file_location(f"emitted_{name.replace('-', '_')}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """family -> (tiny model folder, its script, its script with LoRA on the experts too)."""
    from mhgen import tiny

    out = {}
    for family, fmt, name in MOE:
        root = tmp_path_factory.mktemp(family)
        model_dir = tiny.build(family, fmt, root / name, seed=1)
        plain = emitted(root, model_dir, family)
        targets = ["q_proj", "v_proj", "gate_up", "down"]
        with_experts = emitted(root, model_dir, family + "-experts", lora_target_modules=targets)
        out[family] = (model_dir, plain, with_experts)
    return out


def original(model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def experts_of(model):
    return [layer.mlp.experts for layer in model.model.layers]


def dequantized_linear(layer):
    import bitsandbytes.functional as F

    return F.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()


def reference_for(model_dir, nf4):
    """transformers' own model, given every weight the NF4 model computes with."""
    import torch

    reference = original(model_dir)
    with torch.no_grad():
        for mine, theirs in zip(nf4.model.layers, reference.model.layers, strict=True):
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                getattr(theirs.self_attn, proj).weight.copy_(
                    dequantized_linear(getattr(mine.self_attn, proj))
                )
            for ours, theirs_name in PROJECTIONS.items():
                getattr(theirs.mlp.experts, theirs_name).copy_(mine.mlp.experts.dequantize(ours))
    return reference


def tokens():
    import torch

    return torch.randint(0, 200, (2, 24), generator=torch.Generator().manual_seed(0))


def logits_and_input_grad(model, ids):
    """Logits and the gradient of the loss with respect to the input embeddings."""
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
    out = model(inputs_embeds=embeds, labels=ids)
    out.loss.backward()
    return out.logits.detach(), embeds.grad


@pytest.mark.parametrize("family", IDS)
def test_outputs_and_input_gradients_equal_transformers_on_the_same_weights(built, family):
    import torch

    model_dir, script, _ = built[family]
    nf4 = script.load_model(on_gpu=False)
    reference = reference_for(model_dir, nf4)
    ids = tokens()
    expected, expected_grad = logits_and_input_grad(reference, ids)
    actual, actual_grad = logits_and_input_grad(nf4, ids)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(actual_grad, expected_grad, rtol=1e-5, atol=1e-6)
    assert expected_grad.abs().sum() > 0
    # the loop over experts (for a torch without grouped GEMM) computes the same
    assert all(e.grouped_gemm for e in experts_of(nf4))  # this torch has it on the CPU
    for experts in experts_of(nf4):
        experts.grouped_gemm = False
    looped, looped_grad = logits_and_input_grad(nf4, ids)
    torch.testing.assert_close(looped, actual, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(looped_grad, actual_grad, rtol=1e-6, atol=1e-7)


def assert_nf4_of(packed, state, weight):
    """``packed``/``state`` are bitsandbytes' own NF4 (double-quantized) of ``weight``, 2-D."""
    import bitsandbytes.functional as F
    import torch

    expected, expected_state = F.quantize_4bit(
        weight.contiguous(), blocksize=64, compress_statistics=True, quant_type="nf4"
    )
    assert state.quant_type == "nf4" and state.blocksize == 64
    assert torch.equal(packed, expected)
    assert torch.equal(state.absmax, expected_state.absmax)
    assert torch.equal(state.state2.absmax, expected_state.state2.absmax)


def assert_stacks_quantize(nf4, weights_of_layer):
    """Every layer's expert stacks are the NF4 of ``weights_of_layer(i)[projection]``."""
    for i, experts in enumerate(experts_of(nf4)):
        for ours in PROJECTIONS:
            weight = weights_of_layer(i)[ours]
            packed = getattr(experts, ours + "_nf4")
            assert_nf4_of(packed, experts.states[ours], weight.reshape(-1, weight.shape[-1]))


@pytest.mark.parametrize("family", IDS)
def test_the_buffers_are_bitsandbytes_nf4_of_the_checkpoint_weights(built, family):
    model_dir, script, _ = built[family]
    nf4, full = script.load_model(on_gpu=False), original(model_dir)
    fused = experts_of(full)
    assert_stacks_quantize(
        nf4, lambda i: {ours: getattr(fused[i], theirs) for ours, theirs in PROJECTIONS.items()}
    )
    for mine, theirs in zip(nf4.model.layers, full.model.layers, strict=True):
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            layer = getattr(mine.self_attn, proj)
            assert_nf4_of(
                layer.weight.data, layer.weight.quant_state, getattr(theirs.self_attn, proj).weight
            )


@pytest.mark.parametrize("family", IDS)
def test_a_sharded_checkpoint_loads_the_same(built, family, tmp_path):
    import torch

    model_dir, script, _ = built[family]
    sharded = tmp_path / model_dir.name
    original(model_dir).save_pretrained(sharded, max_shard_size="40KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, sharded / name)
    assert (sharded / "model.safetensors.index.json").is_file()
    single = script.load_model(on_gpu=False)
    script.BASE_MODEL = str(sharded)
    try:
        from_shards = script.load_model(on_gpu=False)
    finally:
        script.BASE_MODEL = str(model_dir)
    for a, b in zip(experts_of(single), experts_of(from_shards), strict=True):
        for ours in PROJECTIONS:
            assert torch.equal(getattr(a, ours + "_nf4"), getattr(b, ours + "_nf4"))


# MXFP4, from its definition (OCP Microscaling formats): blocks of 32 values along the input
# dimension share one E8M0 scale 2**(s - 127); each value is a 4-bit E2M1 float, two per byte,
# the even-indexed one in the low nibble.
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def mxfp4_encode(weight):
    """(..., n) float weight -> blocks (..., n/32, 16) uint8 and scales (..., n/32) uint8."""
    import torch

    *lead, n = weight.shape
    groups = weight.reshape(*lead, n // 32, 32)
    top = groups.abs().amax(-1).clamp(min=2**-100)
    exponent = torch.floor(torch.log2(top)) - 2  # the largest value maps to 4..8: codes reach 6
    scaled = groups / torch.exp2(exponent)[..., None]
    values = torch.tensor(E2M1)
    codes = (scaled[..., None] - values).abs().argmin(-1).to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks, (exponent + 127).to(torch.uint8)


def mxfp4_decode(blocks, scales):
    import torch

    values = torch.tensor(E2M1)
    codes = torch.stack([blocks & 0x0F, blocks >> 4], dim=-1).flatten(-2).long()
    groups = values[codes] * torch.exp2(scales.float() - 127)[..., None]
    return groups.flatten(-2)


def test_gpt_oss_s_mxfp4_checkpoint_is_dequantized_then_quantized_to_nf4(built, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    model_dir, script, _ = built["gpt-oss"]
    folder = tmp_path / "gpt-oss-20b-mxfp4"
    shutil.copytree(model_dir, folder)
    tensors = load_file(folder / "model.safetensors")
    decoded = {}  # what the MXFP4 checkpoint holds, as transformers lays it out (experts x in x out)
    for name in [n for n in tensors if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        weight = tensors.pop(name)  # (experts, in, out); MXFP4 blocks run along `in`
        blocks, scales = mxfp4_encode(weight.transpose(1, 2))
        tensors[name + "_blocks"], tensors[name + "_scales"] = blocks, scales
        decoded[name] = mxfp4_decode(blocks, scales).transpose(1, 2)
        assert ((decoded[name] - weight).norm() / weight.norm()) < 0.2  # a faithful encoding
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": ["router"]}
    (folder / "config.json").write_text(json.dumps(config))
    script.BASE_MODEL = str(folder)
    try:
        nf4 = script.load_model(on_gpu=False)
    finally:
        script.BASE_MODEL = str(model_dir)
    assert_stacks_quantize(
        nf4,
        lambda i: {
            ours: decoded[f"model.layers.{i}.mlp.experts.{theirs}"]
            for ours, theirs in PROJECTIONS.items()
        },
    )
    assert nf4.config.quantization_config is None
    assert torch.isfinite(nf4(tokens()).logits).all()


@pytest.mark.parametrize("family", IDS)
def test_nf4_differs_from_the_original_by_nf4_rounding_only(built, family):
    import torch

    model_dir, script, _ = built[family]
    exact, nf4 = original(model_dir), script.load_model(on_gpu=False)
    errors = []  # relative error of every expert's weight
    for mine, theirs in zip(experts_of(nf4), experts_of(exact), strict=True):
        for ours, theirs_name in PROJECTIONS.items():
            approx, weight = mine.dequantize(ours), getattr(theirs, theirs_name)
            errors += [
                ((approx[e] - weight[e]).norm() / weight[e].norm()).item()
                for e in range(len(weight))
            ]
    weight_error = max(errors)
    assert min(errors) > 0.03 and weight_error < 0.2  # 16 levels scaled per block of 64
    with torch.no_grad():
        ids = tokens()
        a, b = nf4(ids).logits, exact(ids).logits
    error = ((a - b).norm() / b.norm()).item()
    # independent rounding errors of the 6 NF4 matmuls a token meets per layer add in quadrature
    matmuls = 6 * len(nf4.model.layers)
    assert weight_error / 10 < error < matmuls**0.5 * weight_error, (error, weight_error)


@pytest.mark.parametrize("family", IDS)
def test_no_16_bit_decoder_weight_is_left_and_bytes_match_the_plan(built, family):
    import bitsandbytes as bnb
    import torch

    model_dir, script, _ = built[family]
    exact, nf4 = original(model_dir), script.load_model(on_gpu=False)
    assert not [n for n, p in nf4.named_parameters() if p.dim() == 3]  # fused experts are gone
    weights = 0
    for layer in exact.model.layers:
        weights += sum(
            getattr(layer.self_attn, p).weight.numel()
            for p in ("q_proj", "k_proj", "v_proj", "o_proj")
        )
        weights += layer.mlp.experts.gate_up_proj.numel() + layer.mlp.experts.down_proj.numel()
    linears = [m for m in nf4.model.layers.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert all(m.weight.dtype == torch.uint8 for m in linears)
    pieces = [(m.weight.data, m.weight.quant_state) for m in linears]
    pieces += [(getattr(e, n + "_nf4"), e.states[n]) for e in experts_of(nf4) for n in PROJECTIONS]
    assert sum(packed.numel() * 2 for packed, _ in pieces) == weights  # two 4-bit values a byte
    held = 0  # packed weights + 8-bit absmax per block of 64 + fp32 absmax per 256 blocks
    for packed, state in pieces:
        held += packed.numel() + state.absmax.numel() * state.absmax.element_size()
        held += state.state2.absmax.numel() * state.state2.absmax.element_size()
    assert held == pytest.approx(weights * NF4_BYTES, rel=0.02)


@pytest.mark.parametrize("family", IDS)
def test_loading_reads_one_layer_at_a_time(built, family, monkeypatch):
    _, script, _ = built[family]
    reads = []
    read = script.read_checkpoint
    monkeypatch.setattr(
        script,
        "read_checkpoint",
        lambda names, files: reads.append(list(names)) or read(names, files),
    )
    script.load_model(on_gpu=False)
    layers = [r for r in reads if r[0].startswith("model.layers.")]
    assert len(layers) == 2  # the tiny models have two decoder layers
    for i, names in enumerate(layers):
        assert all(n.startswith(f"model.layers.{i}.") for n in names)
    assert all(len(r) == 1 for r in reads if not r[0].startswith("model.layers."))  # one by one


@pytest.mark.parametrize("family", IDS)
def test_lora_on_the_experts_trains_and_loads_onto_transformers_fused_experts(
    built, family, tmp_path
):
    import torch
    from peft import PeftModel

    model_dir, _, script = built[family]
    model = script.add_lora(script.load_model(on_gpu=False))
    experts = experts_of(model.base_model.model)
    torch.manual_seed(0)
    for e in experts:  # lora_B starts at zero: give it something to carry
        for pair in e.lora.values():
            torch.nn.init.normal_(pair["lora_B"].weight, std=0.05)
    ids = tokens()
    model.train()
    model(ids, labels=ids).loss.backward()
    for e in experts:
        for pair in e.lora.values():
            assert (
                pair["lora_A"].weight.grad.abs().sum() > 0
                and pair["lora_B"].weight.grad.abs().sum() > 0
            )
    frozen = [p for n, p in model.named_parameters() if "lora" not in n]
    assert frozen and not any(p.requires_grad for p in frozen)
    model.eval()
    model.save_pretrained(tmp_path / "adapter")
    # PEFT, on transformers' own model with the same (dequantized) base weights, gives the same
    reference = reference_for(model_dir, model.base_model.model)
    loaded = PeftModel.from_pretrained(reference, tmp_path / "adapter").eval()
    assert type(loaded.base_model.model.model.layers[0].mlp.experts).__name__ == "ParamWrapper"
    # (with gradients, as in training: bitsandbytes' CPU inference kernel rounds differently)
    logits, grad = logits_and_input_grad(model, ids)
    expected_logits, expected_grad = logits_and_input_grad(loaded, ids)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)
    # and resuming reads the experts' LoRA back into a fresh model
    fresh = script.add_lora(script.load_model(on_gpu=False))
    script.load_expert_lora(fresh, tmp_path / "adapter")
    for a, b in zip(experts_of(fresh.base_model.model), experts, strict=True):
        for name in a.lora:
            for kind in ("lora_A", "lora_B"):
                assert torch.equal(a.lora[name][kind].weight, b.lora[name][kind].weight)


@pytest.mark.parametrize("family", IDS)
def test_disabling_peft_s_adapters_turns_the_experts_lora_off_too(built, family):
    """DPO's reference forward runs the model under PEFT's disable_adapter(): the experts' LoRA
    (the script's own, not PEFT's) must be off then, so that the reference is the base model."""
    import torch

    _, script, with_experts = built[family]
    base = script.load_model(on_gpu=False).eval()
    model = with_experts.add_lora(with_experts.load_model(on_gpu=False)).eval()
    for e in experts_of(model.base_model.model):
        for pair in e.lora.values():
            torch.nn.init.normal_(pair["lora_B"].weight, std=0.05)
    ids = tokens()
    with torch.no_grad():
        adapted, expected = model(ids).logits, base(ids).logits
        with model.disable_adapter():
            disabled = model(ids).logits
        again = model(ids).logits
    assert (adapted - expected).abs().max() > 1e-3  # the experts' LoRA changes the output
    torch.testing.assert_close(disabled, expected, rtol=0, atol=0)
    torch.testing.assert_close(again, adapted, rtol=0, atol=0)  # and is on again after
