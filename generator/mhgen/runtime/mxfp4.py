# ---- MXFP4: gpt-oss's expert weights, quantized to and dequantized from its checkpoint format
#
# MXFP4 (OCP Microscaling formats, v1.0): 32 consecutive values share one 8-bit E8M0 scale, the
# power of two 2**(s - 127), and each value is a 4-bit E2M1 float (sign, 2 exponent bits, 1
# mantissa bit): 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives. gpt-oss's checkpoint stores an
# expert projection as `<name>_blocks` (uint8, experts x out x in/32 x 16: two values a byte, the
# even-indexed one in the low nibble) and `<name>_scales` (uint8, experts x out x in/32), so the
# blocks run along each expert's input dimension. transformers' convert_moe_packed_tensors turns
# them into the model's parameter, (experts x in x out), e.g. mlp.experts.gate_up_proj
# (experts x hidden x 2*intermediate); quantize_mxfp4 takes that layout and gives back the
# checkpoint's two tensors. The scale is the specification's: 2**(floor(log2(max |x|)) - 2), so
# the block's largest value, divided by it, lands in [4, 8), and above 6 becomes 6; each value is
# rounded to the nearest E2M1 value, ties to the even code (mantissa bit 0). Both directions work
# on a few million values at a time, so a 32 x 2880 x 5760 projection needs no big temporaries.

import itertools

MXFP4_BLOCK = 32  # values sharing one scale
MXFP4_E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # codes 0..7; codes 8..15 are the negatives


def mxfp4_matrices(shape, trailing: int):
    """Every index of the leading dimensions of ``shape`` (all but the last ``trailing``)."""
    return itertools.product(*(range(n) for n in shape[:-trailing]))


def mxfp4_encode_rows(rows):
    """(n, k) float32 rows, k a multiple of 32 -> (codes packed two a byte (n, k/32, 16) uint8,
    E8M0 scales (n, k/32) uint8), one scale per 32 consecutive values of a row. Raises
    ValueError if a value is inf or NaN."""
    import torch

    n, k = rows.shape
    x = rows.reshape(n, k // MXFP4_BLOCK, MXFP4_BLOCK)
    magnitude = x.abs()
    largest = magnitude.amax(-1)  # NaN if the block holds one
    if not torch.isfinite(largest).all():
        raise ValueError("MXFP4 cannot hold inf or NaN")
    # floor(log2(a)) is frexp's exponent - 1 (a = m * 2**e, 0.5 <= m < 1), exact for subnormals
    _, exponent = torch.frexp(largest)
    # an all-zero block takes the smallest scale, 2**-127 (log2(0) clamped), byte 0
    shared = torch.where(largest > 0, exponent - 3, -127).clamp_(-127, 127)
    # 2**-shared is a normal float32 (shared >= -127 and <= 125 for any finite float32), built
    # from its bits so that the scaling is an exact multiplication by a power of two
    magnitude *= ((127 - shared) << 23).view(torch.float32)[..., None]
    # the nearest E2M1 value: count the midpoints below; on a midpoint between codes c and c + 1
    # the even code wins (ties to even, as the specification's conversions round)
    codes = torch.zeros(magnitude.shape, dtype=torch.uint8, device=magnitude.device)
    for code, (low, high) in enumerate(itertools.pairwise(MXFP4_E2M1)):
        midpoint = (low + high) / 2
        codes += magnitude > midpoint if code % 2 == 0 else magnitude >= midpoint
    del magnitude  # above 5 (the last midpoint) is code 7, 6.0: the clamp
    codes |= torch.signbit(x).to(torch.uint8) << 3  # -0.0 stays -0.0
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return packed, (shared + 127).to(torch.uint8)


def mxfp4_decode_rows(blocks, scales):
    """(n, g, 16) uint8 packed codes and (n, g) uint8 E8M0 scales -> (n, g * 32) float32."""
    import torch

    n, groups, _ = blocks.shape
    codes = torch.stack((blocks & 0x0F, blocks >> 4), dim=-1).reshape(n, groups, MXFP4_BLOCK)
    # E2M1 from its bits: exponent 0 is subnormal, m * 0.5; else (1 + m / 2) * 2**(e - 1)
    exponent = ((codes >> 1) & 0b11).to(torch.int32)
    mantissa = (codes & 1).to(torch.float32)
    normal = (1 + mantissa / 2) * (torch.ones_like(exponent) << exponent).to(torch.float32) / 2
    magnitude = torch.where(exponent == 0, mantissa / 2, normal)
    values = torch.where((codes >> 3).bool(), -magnitude, magnitude)
    # E8M0: 2**(s - 127) as float32 bits; s = 0 is the subnormal 2**-127, s = 255 is NaN
    s = scales.to(torch.int32)
    bits = torch.where(s == 0, 1 << 22, s << 23)
    power = torch.where(s == 255, float("nan"), bits.view(torch.float32))
    return (values * power[..., None]).reshape(n, groups * MXFP4_BLOCK)


def quantize_mxfp4(weight, chunk_elements: int = 1 << 22):
    """MXFP4 of ``weight`` (float32, bfloat16 or float16), laid out as transformers'
    convert_moe_packed_tensors returns it and as gpt-oss's model holds the parameter:
    (..., k, rows), e.g. mlp.experts.gate_up_proj (experts, hidden, 2 * intermediate), blocks of 32
    along k. Returns the checkpoint's (blocks, scales): uint8 (..., rows, k / 32, 16) and
    (..., rows, k / 32), e.g. gate_up_proj_blocks and gate_up_proj_scales. Works on about
    ``chunk_elements`` values at a time, on the weight's device. Raises ValueError on inf or
    NaN, or if k is not a multiple of 32."""
    import torch

    if weight.dim() < 2 or not weight.is_floating_point():
        raise ValueError(
            f"MXFP4 quantizes a float tensor of 2 or more dimensions, not {weight.dtype} "
            f"{tuple(weight.shape)}"
        )
    *lead, k, rows = weight.shape
    if k % MXFP4_BLOCK:
        raise ValueError(f"MXFP4 blocks of 32 need a multiple of 32 values, not {k}")
    blocks = torch.empty(*lead, rows, k // MXFP4_BLOCK, 16, dtype=torch.uint8, device=weight.device)
    scales = torch.empty(*lead, rows, k // MXFP4_BLOCK, dtype=torch.uint8, device=weight.device)
    step = max(1, chunk_elements // k)
    for index in mxfp4_matrices(weight.shape, 2):
        matrix = weight[index]
        for r0 in range(0, rows, step):
            piece = matrix[:, r0 : r0 + step].t().to(torch.float32).contiguous()
            try:
                encoded = mxfp4_encode_rows(piece)
            except ValueError as error:
                where = ", ".join([*map(str, index), ":", f"{r0}:{r0 + len(piece)}"])
                raise ValueError(f"{error}, and there is some in weight[{where}]") from None
            blocks[index][r0 : r0 + step], scales[index][r0 : r0 + step] = encoded
    return blocks, scales


def dequantize_mxfp4(blocks, scales, dtype=None, chunk_elements: int = 1 << 22):
    """The weight that gpt-oss's checkpoint tensors (blocks (..., rows, g, 16), scales
    (..., rows, g), uint8) hold, decoded from MXFP4's definition, in the layout of transformers'
    convert_moe_packed_tensors and the model's parameter: (..., g * 32, rows), in ``dtype``
    (bfloat16 unless given)."""
    import torch

    dtype = dtype or torch.bfloat16
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise ValueError(f"MXFP4 blocks and scales are uint8, not {blocks.dtype}, {scales.dtype}")
    if blocks.dim() < 3 or blocks.shape[-1] != 16 or blocks.shape[:-1] != scales.shape:
        raise ValueError(
            f"MXFP4 blocks (..., rows, g, 16) need scales (..., rows, g): "
            f"{tuple(blocks.shape)} and {tuple(scales.shape)}"
        )
    *lead, rows, groups, _ = blocks.shape
    out = torch.empty(*lead, groups * MXFP4_BLOCK, rows, dtype=dtype, device=blocks.device)
    step = max(1, chunk_elements // (groups * MXFP4_BLOCK))
    for index in mxfp4_matrices(blocks.shape, 3):
        for r0 in range(0, rows, step):
            piece = mxfp4_decode_rows(blocks[index][r0 : r0 + step], scales[index][r0 : r0 + step])
            out[index][:, r0 : r0 + step] = piece.t()
    return out
