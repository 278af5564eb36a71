"""MXFP4, gpt-oss's checkpoint format for its experts: the runtime's quantize_mxfp4 and
dequantize_mxfp4 (generator/mhgen/runtime/mxfp4.py), checked against the format's definition
(OCP Microscaling formats v1.0) and transformers' own dequantization, convert_moe_packed_tensors,
which from_pretrained loads gpt-oss's checkpoint with:
- every MXFP4 value comes back bit for bit, with the scale and bytes the definition gives;
- random weights: our decoder and transformers' agree bit for bit, and re-quantizing is exact;
- on weights like a real init, each value is the NEAREST value of its block's grid (no other
  error), under the specification's scale, ties to the even code;
- the layout: which nibble, which axis the blocks run along, which tensor is which parameter;
- zero blocks, signed zeros, inf and NaN.
Expected values come from the definition, coded here independently of the module.
"""

from __future__ import annotations

import math

import pytest

from conftest import require

require("torch", "transformers")


def e2m1(code: int) -> float:
    """The E2M1 value of a 4-bit code, from its bits: sign, 2 exponent bits (bias 1), 1 mantissa
    bit; exponent 0 is subnormal."""
    sign, exponent, mantissa = code >> 3, (code >> 1) & 3, code & 1
    magnitude = mantissa / 2 if exponent == 0 else (1 + mantissa / 2) * 2.0 ** (exponent - 1)
    return -magnitude if sign else magnitude


MAGNITUDES = [e2m1(code) for code in range(8)]  # 0, 0.5, 1, 1.5, 2, 3, 4, 6


def same_bits(a, b) -> bool:
    """Equal bit for bit (so -0.0 differs from 0.0), in the same dtype and shape."""
    import torch

    ints = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float64: torch.int64}
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.view(ints[a.dtype]), b.view(ints[b.dtype]))
    )


def pack(codes):
    """(..., 32) codes -> (..., 16) bytes: the even-indexed value in the low nibble."""
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def from_checkpoint_layout(values):
    """(experts, rows, k) values, blocks along k as the checkpoint runs them -> the weight as
    transformers lays it out, (experts, k, rows)."""
    return values.transpose(1, 2).contiguous()


def test_every_mxfp4_value_comes_back_bit_for_bit():
    import torch
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from mhgen.runtime.mxfp4 import quantize_mxfp4

    generator = torch.Generator().manual_seed(0)
    # one block per (row, group): every code twice, so each block reaches 6 * 2**s
    exponents = torch.tensor([[-127, -10], [-1, 0], [1, 10], [125, 3]])  # (rows, groups)
    experts, (rows, groups) = 2, exponents.shape
    codes = torch.stack(
        [
            torch.randperm(16, generator=generator).repeat(2)[
                torch.randperm(32, generator=generator)
            ]
            for _ in range(experts * rows * groups)
        ]
    ).reshape(experts, rows, groups, 32)
    table = torch.tensor([e2m1(c) for c in range(16)], dtype=torch.float64)
    values = table[codes] * torch.exp2(exponents.double())[None, :, :, None]
    weight = from_checkpoint_layout(values.reshape(experts, rows, groups * 32).float())

    for dtype in (torch.float32, torch.bfloat16):  # every value above is exact in both
        blocks, scales = quantize_mxfp4(weight.to(dtype))
        assert blocks.dtype == scales.dtype == torch.uint8
        assert torch.equal(blocks, pack(codes.to(torch.uint8)))
        assert torch.equal(scales, (exponents + 127).to(torch.uint8).expand(experts, -1, -1))
        assert same_bits(convert_moe_packed_tensors(blocks, scales, dtype=dtype), weight.to(dtype))

    # blocks whose largest value is below 6 * 2**s get a finer scale, and the same values
    for largest in (1, 3, 4, 5, 6):  # codes up to 0.5, 1.5, 2, 3, 4
        small = (codes & 7) % (largest + 1) | (codes & 8)
        weight = from_checkpoint_layout(
            (table[small] * torch.exp2(exponents.double())[None, :, :, None])
            .reshape(experts, rows, groups * 32)
            .float()
        )
        blocks, scales = quantize_mxfp4(weight)
        assert same_bits(convert_moe_packed_tensors(blocks, scales, dtype=torch.float32), weight)


def test_random_weights_decode_the_same_in_transformers_and_here():
    import torch
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from mhgen.runtime.mxfp4 import dequantize_mxfp4, quantize_mxfp4

    torch.manual_seed(0)
    # gpt-oss's per-expert layout, small: (experts, in, out), blocks along `in`
    weight = torch.randn(4, 64, 128) * torch.logspace(-3, 1, 128)
    for dtype in (torch.float32, torch.bfloat16):
        blocks, scales = quantize_mxfp4(weight.to(dtype))
        assert blocks.shape == (4, 128, 2, 16) and scales.shape == (4, 128, 2)
        # a few values at a time: the same bytes
        assert all(
            map(
                torch.equal,
                quantize_mxfp4(weight.to(dtype), chunk_elements=64 * 24),
                (blocks, scales),
            )
        )
        for out in (torch.float32, torch.bfloat16):
            theirs = convert_moe_packed_tensors(blocks, scales, dtype=out)
            assert same_bits(dequantize_mxfp4(blocks, scales, dtype=out), theirs)
            assert same_bits(
                dequantize_mxfp4(blocks, scales, dtype=out, chunk_elements=64 * 24), theirs
            )
        # what MXFP4 holds, quantized again, is the same bytes
        again = quantize_mxfp4(dequantize_mxfp4(blocks, scales))
        assert torch.equal(again[0], blocks) and torch.equal(again[1], scales)
    assert dequantize_mxfp4(blocks, scales).dtype == torch.bfloat16  # as transformers' default


def test_each_value_is_the_nearest_on_its_block_s_grid():
    import torch
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from mhgen.runtime.mxfp4 import quantize_mxfp4

    torch.manual_seed(0)
    weight = torch.randn(4, 64, 128) * 0.02  # like the model's initialization
    blocks, scales = quantize_mxfp4(weight)
    back = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32).double()
    w = weight.double()

    # the specification's scale: 2**(floor(log2(largest |value|)) - 2), per block of 32 along `in`
    groups = weight.transpose(1, 2).reshape(4, 128, 2, 32)
    largest = groups.abs().amax(-1).flatten().tolist()
    expected = [math.frexp(a)[1] - 1 - 2 + 127 for a in largest]
    assert scales.flatten().tolist() == expected
    scale = from_checkpoint_layout(torch.exp2(scales.double() - 127).repeat_interleave(32, dim=-1))

    error = (back - w).abs()
    grid = torch.tensor(MAGNITUDES[1:], dtype=torch.float64)
    grid = torch.cat([-grid, torch.zeros(1, dtype=torch.float64), grid])
    nearest = (w[..., None] - grid * scale[..., None]).abs().amin(-1)
    assert torch.equal(error, nearest)  # no value of the grid is nearer than the one chosen
    scaled = w.abs() / scale
    inside = scaled <= MAGNITUDES[-1]
    half_gap = max(b - a for a, b in zip(MAGNITUDES[:-1], MAGNITUDES[1:], strict=True)) / 2
    assert (error[inside] <= half_gap * scale[inside]).all()
    # above 6 * scale (the largest value lands in [4, 8)): clamped to +-6 * scale
    assert (~inside).any()
    assert torch.equal(back[~inside], w[~inside].sign() * MAGNITUDES[-1] * scale[~inside])

    relative_rms = ((back - w).pow(2).mean() / w.pow(2).mean()).sqrt().item()
    print(f"MXFP4 relative RMS error on N(0, 0.02) weights: {relative_rms:.4f}")


def test_ties_round_to_the_even_code():
    import torch

    from mhgen.runtime.mxfp4 import quantize_mxfp4

    def next_float32(value, toward):
        return torch.nextafter(torch.tensor(value), torch.tensor(toward)).item()

    values, codes = [MAGNITUDES[-1]], [7]  # 6.0 makes the scale 1
    for code in range(7):
        low, high = MAGNITUDES[code], MAGNITUDES[code + 1]
        middle = (low + high) / 2  # exact in float32
        values += [middle, next_float32(middle, 0.0), next_float32(middle, 9.0), -middle]
        tie = code if code % 2 == 0 else code + 1
        codes += [tie, code, code + 1, tie | 8]
    values += [5.9, 6.0, -0.1]
    codes += [7, 7, 8]  # -0.1 rounds to -0.0
    weight = torch.tensor(values, dtype=torch.float32).reshape(1, 32, 1)
    blocks, scales = quantize_mxfp4(weight)
    assert scales.tolist() == [[[127]]]
    assert torch.equal(blocks, pack(torch.tensor(codes, dtype=torch.uint8)).reshape(1, 1, 1, 16))
    # a block whose largest value is 7.9 has the scale 1 too: 7.9 is clamped to 6
    blocks, scales = quantize_mxfp4(torch.full((1, 32, 1), -7.9))
    assert scales.tolist() == [[[127]]] and blocks.unique().tolist() == [0xFF]


def test_layout_nibbles_and_block_axis():
    import torch
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from mhgen.runtime.mxfp4 import dequantize_mxfp4, quantize_mxfp4

    experts, k, rows = 2, 64, 3

    def code(e, i, r):  # neighbours differ; every run of 32 along `in` holds all 16 codes
        return (7 * i + 3 * r + 5 * e) % 16

    def exponent(e, r, g):  # a different scale per block
        return (e * rows + r) * 2 + g - 6

    weight = torch.tensor(
        [
            [
                [e2m1(code(e, i, r)) * 2.0 ** exponent(e, r, i // 32) for r in range(rows)]
                for i in range(k)
            ]
            for e in range(experts)
        ]
    )
    blocks, scales = quantize_mxfp4(weight)
    expected_blocks = [
        [
            [
                [
                    code(e, 32 * g + 2 * j, r) | code(e, 32 * g + 2 * j + 1, r) << 4
                    for j in range(16)
                ]
                for g in range(2)
            ]
            for r in range(rows)
        ]
        for e in range(experts)
    ]
    expected_scales = [
        [[exponent(e, r, g) + 127 for g in range(2)] for r in range(rows)] for e in range(experts)
    ]
    assert blocks.tolist() == expected_blocks
    assert scales.tolist() == expected_scales
    assert same_bits(convert_moe_packed_tensors(blocks, scales, dtype=torch.float32), weight)
    assert same_bits(dequantize_mxfp4(blocks, scales, dtype=torch.float32), weight)
    # a weight without experts works too (transformers' function needs the experts axis)
    single = quantize_mxfp4(weight[1])
    assert torch.equal(single[0], blocks[1]) and torch.equal(single[1], scales[1])
    assert same_bits(dequantize_mxfp4(*single, dtype=torch.float32), weight[1])


def test_checkpoint_tensors_load_into_gpt_oss_s_parameters(tmp_path):
    """Written under the checkpoint's names with config.json's quantization_config, the blocks
    and scales load (dequantized, on a machine without Triton) into mlp.experts.gate_up_proj and
    down_proj as dequantize_mxfp4 decodes them: the same layout, no transpose between."""
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import GptOssConfig, GptOssForCausalLM

    from mhgen.runtime.mxfp4 import dequantize_mxfp4, quantize_mxfp4

    config = GptOssConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        num_local_experts=4,
        num_experts_per_tok=2,
        layer_types=["full_attention"],
    )
    torch.manual_seed(0)
    tensors = {
        k: v.contiguous()
        for k, v in GptOssForCausalLM(config).to(torch.bfloat16).state_dict().items()
    }
    expected = {}
    for name in ("gate_up_proj", "down_proj"):
        key = f"model.layers.0.mlp.experts.{name}"
        blocks, scales = quantize_mxfp4(tensors.pop(key))
        tensors[key + "_blocks"], tensors[key + "_scales"] = blocks, scales
        expected[key] = dequantize_mxfp4(blocks, scales)
    assert tensors["model.layers.0.mlp.experts.gate_up_proj_blocks"].shape == (4, 64, 2, 16)
    assert tensors["model.layers.0.mlp.experts.down_proj_blocks"].shape == (4, 64, 1, 16)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    saved = config.to_dict()
    saved["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
    }
    (tmp_path / "config.json").write_text(json.dumps(saved))
    model = GptOssForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    for key, weight in expected.items():
        assert same_bits(model.get_parameter(key).data, weight), key


def test_zero_blocks_signed_zeros_and_non_finite_values():
    import torch
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from mhgen.runtime.mxfp4 import quantize_mxfp4

    weight = torch.zeros(1, 96, 2)
    weight[0, 32:64, 0] = -0.0
    weight[0, 64:, 0] = torch.linspace(-6, 6, 32)  # the scale 1
    blocks, scales = quantize_mxfp4(weight)
    # a zero block: codes 0 (or 8, -0.0) and the smallest scale, 2**-127 (byte 0; 255 is NaN)
    assert scales[0, :, :2].unique().tolist() == [0] and scales[0, 0, 2] == 127
    assert blocks[0, 1].unique().tolist() == [0]
    assert blocks[0, 0, 1].unique().tolist() == [0x88]
    assert same_bits(
        convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)[0, :64], weight[0, :64]
    )

    for bad in (float("nan"), float("inf"), -float("inf")):
        weight[0, 70, 1] = bad
        with pytest.raises(ValueError, match="inf or NaN"):
            quantize_mxfp4(weight)
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_mxfp4(torch.zeros(2, 48, 4))
