"""``mhgen plan``: the peak GPU memory of a config's run, estimated from the model's shapes.

Pure arithmetic on a table of shapes (config.json facts); no torch. The formula, per part:

- weights: 4-bit NF4 (bitsandbytes) for the linear layers and, for MoE models, every expert
  (the emitted script quantizes the experts itself; bitsandbytes' loader leaves transformers'
  fused 3-D expert weights alone): 0.5 byte per weight, plus the quantisation constants with
  double quantisation (an 8-bit absmax per block of 64, and an fp32 constant per 256 blocks):
  1/64 + 4/16384 byte. Embeddings, lm_head, norms and routers stay in the compute dtype (2 bytes;
  the script does not upcast frozen weights to fp32). Without 4-bit: every weight in 2 bytes.
- LoRA: r x (in + out) weights per adapted module, fp32 weight + fp32 gradient + optimizer state
  (AdamW: 8 bytes; 8-bit AdamW: 2 bytes).
- activations, for the t tokens of a micro-batch (batch x max_seq_length padded, or the real
  tokens of a padding_free row): with checkpointing, every layer keeps its input, t h in the
  compute dtype (exact, not fitted), and one layer is recomputed at a time; without, every layer
  keeps all. A layer's activations: t (8 h + 3 i) x 2 bytes with i the MLP width a token goes
  through (top-k x expert width for MoE), times ACTIVATION_FACTOR. Eager attention (gpt-oss) also
  holds the scores: b heads s^2 x 6. Selective checkpointing keeps every layer's attention output
  too (t x heads x head_dim x 2 bytes); a padding_free row its block-diagonal mask (t^2 bytes).
- logits and loss: LOSS_BYTES per token x vocabulary entry. The stack computes the loss without
  holding the full fp32 logits (a full fp32 copy would be 4 bytes per entry).
- experts, dequantized (MoE in 4-bit): the emitted script dequantizes one expert projection of a
  layer, every expert's, for its grouped GEMM and frees it after: the largest such stack in the
  compute dtype is held at a time (gpt-oss-20b: 32 x 5760 x 2880 x 2 bytes, 1.1 GB).
- allocator constant, then a stated CUDA-context reserve that max_memory_allocated does not see.
- method dpo: a micro-batch of b pairs is 2b sequences (each pair's chosen and rejected
  conversation), which the policy's forward and backward hold as above; the reference's forward
  (the adapter disabled, no gradient) runs before it and holds less, one layer's activations at a
  time. Not yet measured on a GPU.

Host memory (MoE in 4-bit): the script loads the checkpoint itself, one decoder layer at a time,
so the host holds at most one layer of the checkpoint or one embedding matrix at a time, beside
the process's own memory (PROCESS_BYTES, stated: python, torch, the CUDA libraries).

ACTIVATION_FACTOR, LOSS_BYTES and the constant were fitted to five peaks measured on an H100
(bench/calibrate_memory.py; docs in the closing note of the speed-and-memory issue): Qwen3-0.6B
shapes in bf16 and 4-bit, with and without checkpointing, and 4 layers of Qwen3-Coder-30B-A3B
(largest error 14%). The 4-bit ones ran mhgen 0.1.0's scripts, which called peft's
prepare_model_for_kbit_training (every frozen weight that is not 4-bit upcast to fp32, fused
experts included): estimate(..., fp32_upcast=True) is that layout, kept so those measurements
still check the other terms. Two peaks measured later on an H200 with the shipped configs
(gpt-oss-20b, Qwen3-8B) played no part in the fit: the estimate is within 6% of both
(tests/test_vram.py keeps both sets, apart).
"""

from __future__ import annotations

from dataclasses import dataclass

from .families import adapts_experts

GIB = 2**30
GPU_SIZES_GB = (16, 24, 40, 48, 80, 141)
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
ACTIVATION_FACTOR = 2.25  # fitted (see above)
LOSS_BYTES = 0.3  # fitted: bytes per token x vocabulary entry
ALLOCATOR_BYTES = 0.2 * GIB  # fitted constant of torch.cuda.max_memory_allocated
CONTEXT_BYTES = 0.75 * GIB  # CUDA context + cuBLAS workspace: stated, not in the fit
PROCESS_BYTES = 2.5 * GIB  # host memory of python + torch + CUDA libraries: stated
MXFP4_BYTES = 17 / 32  # 4 bits a weight and an 8-bit scale per 32 (gpt-oss's checkpoint)


@dataclass(frozen=True)
class Shape:
    """Transformer shapes, from each model's config.json."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP width (0 for MoE)
    vocab: int
    tied: bool = False
    experts: int = 0
    experts_per_token: int = 0
    expert_intermediate: int = 0
    checkpoint_expert_bytes: float = 2.0  # bytes per expert weight in the checkpoint files


SHAPES: dict[str, Shape] = {
    # Qwen/Qwen3-8B config.json
    "qwen3-8b": Shape(4096, 36, 32, 8, 128, 12288, 151936),
    # Qwen/Qwen3-0.6B config.json (the shape bench/bench_train.py --size 0.6b builds)
    "qwen3-0.6b": Shape(1024, 28, 16, 8, 128, 3072, 151936, tied=True),
    # Qwen/Qwen3-Coder-30B-A3B-Instruct config.json: 128 experts, 8 per token
    "qwen3-coder-30b-a3b-instruct": Shape(2048, 48, 32, 4, 128, 0, 151936, False, 128, 8, 768),
    # openai/gpt-oss-20b config.json: 32 experts of width 2880, 4 per token
    "gpt-oss-20b": Shape(2880, 24, 64, 8, 64, 0, 201088, False, 32, 4, 2880, MXFP4_BYTES),
    # meta-llama/Llama-3.1-8B-Instruct and mistralai/Mistral-7B-Instruct-v0.3 config.json
    "llama-3.1-8b-instruct": Shape(4096, 32, 32, 8, 128, 14336, 128256),
    "mistral-7b-instruct-v0.3": Shape(4096, 32, 32, 8, 128, 14336, 32768),
}


def shape_for(base_model: str, config=None) -> Shape | None:
    """The model's shapes: from its config.json when it was read, else from SHAPES by name."""
    if config is not None:
        shape = shape_from_config(config)
        if shape is not None:
            return shape
    return SHAPES.get(base_model.rstrip("/").split("/")[-1].lower())


def shape_from_config(config) -> Shape | None:
    """A Shape from a config.json's fields (transformers' names); None when one is missing."""
    config = config.get("text_config") or config
    get = config.get
    try:
        hidden, heads = int(get("hidden_size")), int(get("num_attention_heads"))
        experts = int(get("num_experts") or get("num_local_experts") or 0)
        intermediate = int(get("intermediate_size") or 0)
        return Shape(
            hidden=hidden,
            layers=int(get("num_hidden_layers")),
            heads=heads,
            kv_heads=int(get("num_key_value_heads") or heads),
            head_dim=int(get("head_dim") or hidden // heads),
            intermediate=0 if experts else intermediate,
            vocab=int(get("vocab_size")),
            tied=bool(get("tie_word_embeddings", False)),
            experts=experts,
            experts_per_token=int(get("num_experts_per_tok") or 0) if experts else 0,
            expert_intermediate=int(get("moe_intermediate_size") or intermediate) if experts else 0,
            checkpoint_expert_bytes=MXFP4_BYTES if _mxfp4(config) else 2.0,
        )
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _mxfp4(config) -> bool:
    quantization = config.get("quantization_config")
    return isinstance(quantization, dict) and quantization.get("quant_method") == "mxfp4"


def _linears(shape: Shape) -> dict[str, tuple[int, int]]:
    """(in, out) of each nn.Linear of one layer."""
    h, q, kv = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    out = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h)}
    if not shape.experts:
        i = shape.intermediate
        out |= {"gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return out


def _weight_counts(shape: Shape) -> tuple[int, int, int]:
    """Weights of the linear layers, of the experts, and the rest (embeddings, lm_head, norms,
    routers)."""
    h, layers = shape.hidden, shape.layers
    linear = layers * sum(i * o for i, o in _linears(shape).values())
    experts = layers * shape.experts * 3 * h * shape.expert_intermediate
    other = shape.vocab * h * (1 if shape.tied else 2) + layers * (2 * h + shape.experts * h)
    return linear, experts, other


def estimate(
    values: dict,
    shape: Shape,
    batch: int | None = None,
    seq: int | None = None,
    fp32_upcast=False,
    grouped_experts=True,
    example_tokens: int | None = None,
) -> dict:
    """Peak bytes by part, for the config's batch and max_seq_length (or the ones given).
    example_tokens: the mean length of an example, for padding_free rows (default: every example
    max_seq_length long). grouped_experts=False is mhgen 0.2.0's MoE layout (one NF4 layer per
    expert, no stack)."""
    b = batch or values["per_device_train_batch_size"]
    b *= 2 if values.get("method") == "dpo" else 1  # a pair: two sequences
    s = seq or values["max_seq_length"]
    padding_free = values.get("batching") == "padding_free"
    t = b * min(example_tokens or s, s) if padding_free else b * s  # tokens of a micro-batch
    h, layers = shape.hidden, shape.layers
    linear_weights, expert_weights, other = _weight_counts(shape)
    if values["load_in_4bit"] and fp32_upcast:  # mhgen 0.1.0's layout (see the module docstring)
        weights = linear_weights * NF4_BYTES + (expert_weights + other) * 4
    elif values["load_in_4bit"]:
        weights = (linear_weights + expert_weights) * NF4_BYTES + other * 2
    else:
        weights = (linear_weights + expert_weights + other) * 2

    optimizer = 2 if "8bit" in values["optim"] else 8
    lora = lora_weight_count(values, shape) * (4 + 4 + optimizer)

    width = shape.intermediate or shape.experts_per_token * shape.expert_intermediate
    layer = ACTIVATION_FACTOR * 2 * t * (8 * h + 3 * width)
    eager = values["attn_implementation"] == "eager"  # flex attention's memory is linear too
    if eager:
        layer += b * shape.heads * s * s * (2 + 4)
    if values["use_gradient_checkpointing"]:
        activations = layers * 2 * t * h + layer
        if values.get("selective_checkpointing") and not eager:
            activations += layers * 2 * t * shape.heads * shape.head_dim
    else:
        activations = layers * layer
    if padding_free:
        activations += t * t  # the boolean block-diagonal mask of the row
    parts = {
        "weights": weights,
        "LoRA + optimizer": lora,
        "activations": activations,
        "logits + loss": LOSS_BYTES * t * shape.vocab,
    }
    if shape.experts and values["load_in_4bit"] and grouped_experts:
        parts["experts, dequantized"] = shape.experts * 2 * shape.expert_intermediate * h * 2
    parts["allocator"] = ALLOCATOR_BYTES
    parts["allocated peak"] = sum(parts.values())
    parts["CUDA context"] = CONTEXT_BYTES
    parts["total"] = parts["allocated peak"] + CONTEXT_BYTES
    return parts


def lora_weight_count(values: dict, shape: Shape) -> int:
    """LoRA's weights: r x (in + out) per adapted linear layer, and per expert for each adapted
    expert projection (a 4-bit MoE model's "gate_up" and "down")."""
    linears, targets, r = _linears(shape), values["lora_target_modules"], values["lora_rank"]
    adapted = [v for k, v in linears.items() if targets == "all-linear" or k in targets]
    count = shape.layers * r * sum(i + o for i, o in adapted)
    if shape.experts and values["load_in_4bit"]:
        h, width = shape.hidden, shape.expert_intermediate
        projections = {"gate_up": (h, 2 * width), "down": (width, h)}
        chosen = [v for k, v in projections.items() if targets == "all-linear" or k in targets]
        count += shape.layers * shape.experts * r * sum(i + o for i, o in chosen)
    return count


DISK_MARGIN = 64 * 2**20  # per checkpoint or adapter: the tokenizer, scheduler and RNG files


def disk_bytes(values: dict, shape: Shape) -> tuple[int, int]:
    """Bytes of one checkpoint (LoRA weights in fp32 and their optimizer state) and of the final
    adapter (the weights), each with DISK_MARGIN."""
    weights = lora_weight_count(values, shape)
    optimizer = 2 if "8bit" in values["optim"] else 8
    return int(weights * (4 + optimizer)) + DISK_MARGIN, int(weights * 4) + DISK_MARGIN


def merged_bytes(values: dict, shape: Shape, fmt: str = "dtype") -> int:
    """Bytes of the merged model the script's --merge writes in ``fmt`` (--merge-format), with
    DISK_MARGIN: every weight in the config's dtype, but experts in MXFP4 with "mxfp4", and an
    MXFP4 checkpoint's experts when the adapter leaves them as they are (copied)."""
    linear, experts, other = _weight_counts(shape)
    size = 4 if values["dtype"] == "float32" else 2
    adapted = values["load_in_4bit"] and adapts_experts(values["lora_target_modules"])
    kept = shape.checkpoint_expert_bytes == MXFP4_BYTES and not adapted
    expert_size = MXFP4_BYTES if fmt == "mxfp4" or kept else size
    return int((linear + other) * size + experts * expert_size) + DISK_MARGIN


def merge_line(values: dict, shape: Shape) -> str:
    """What the script's --merge writes: the merged model's size in each format it offers."""
    size, dtype = merged_bytes(values, shape), values["dtype"]
    mxfp4 = merged_bytes(values, shape, "mxfp4")
    line = f"  --merge writes {size / GIB:.1f} GiB (every weight in {dtype}"
    if shape.checkpoint_expert_bytes != MXFP4_BYTES:
        return line + ")"
    if size == mxfp4:
        return line + ", but the experts, kept in MXFP4 as the checkpoint holds them)"
    return line + f"); --merge-format mxfp4: {mxfp4 / GIB:.1f} GiB (the experts in MXFP4)"


def host_memory(shape: Shape) -> dict:
    """Peak host bytes of an MoE model's layer-by-layer load, by part."""
    h = shape.hidden
    attention = sum(i * o for i, o in _linears(shape).values()) * 2
    experts = shape.experts * 3 * h * shape.expert_intermediate * shape.checkpoint_expert_bytes
    layer, embedding = attention + experts, shape.vocab * h * 2
    return {
        "process": PROCESS_BYTES,
        "one layer": layer,
        "one embedding": embedding,
        "peak": PROCESS_BYTES + max(layer, embedding),
    }


def largest(values: dict, shape: Shape, budget_gb: float, what: str) -> int:
    """The largest per-device batch (what="batch") or max_seq_length ("seq") under the budget,
    at most the largest value the config's schema allows."""
    from .schema import properties

    key = "per_device_train_batch_size" if what == "batch" else "max_seq_length"
    low, high = 0, properties()[key]["maximum"]
    while low < high:
        mid = (low + high + 1) // 2
        kwargs = {"batch": mid} if what == "batch" else {"seq": mid}
        if estimate(values, shape, **kwargs)["total"] <= budget_gb * 1e9:
            low = mid
        else:
            high = mid - 1
    return low


def same_effective_batch(values: dict, largest_batch: int) -> tuple[int, int] | None:
    """(micro-batch, accumulation steps) with the config's effective batch per device and the
    largest micro-batch up to ``largest_batch``: fewer, larger steps (a step's fixed cost is paid
    less often), the same optimizer steps. None where that is the config's own."""
    b = values["per_device_train_batch_size"]
    effective = b * values["gradient_accumulation_steps"]
    best = max((m for m in range(1, effective + 1) if effective % m == 0 and m <= largest_batch),
               default=b)  # fmt: skip
    return None if best <= b else (best, effective // best)


def _cap(value: int, key: str) -> str:
    from .schema import properties

    return " (the most a config allows)" if value == properties()[key]["maximum"] else ""


def report(
    values: dict, gpu_memory_gb: float | None = None, config=None, example_tokens=None
) -> str:
    """The plan's text. ``config``: the model's config.json, when it was read; example_tokens:
    the data's mean example length, which a padding_free row's memory follows."""
    shape = shape_for(values["base_model"], config)
    if shape is None:
        known = ", ".join(sorted(SHAPES))
        return (
            f"no shape known for {values['base_model']!r}: no config.json of it was found (a "
            f"local folder, or the Hugging Face cache) and mhgen's table has only {known}\n"
        )
    parts = estimate(values, shape, example_tokens=example_tokens)
    b, s = values["per_device_train_batch_size"], values["max_seq_length"]
    mode = "4-bit" if values["load_in_4bit"] else values["dtype"]
    tokens = f"batch {b} x {s} tokens"
    if values.get("method") == "dpo":
        tokens = f"batch {b} pairs ({2 * b} sequences) x {s} tokens"
    if values.get("batching") == "padding_free":
        mean = min(example_tokens or s, s)
        tokens = f"padding_free rows of {b} examples x {mean} tokens"
        if example_tokens is None:
            tokens += " (every example max_seq_length long: --tokens-per-example N for your data)"
    lines = [f"{values['base_model']}: {mode}, {tokens}, peak GPU memory estimate:"]
    lines[0] += (
        " (shapes from the model's config.json)"
        if config is not None and shape_from_config(config) is not None
        else " (shapes from mhgen's table)"
    )
    lines += [f"  {name:20} {size / GIB:8.1f} GiB" for name, size in parts.items()]
    if shape.experts and values["load_in_4bit"]:
        linear, experts, other = _weight_counts(shape)
        everything = linear + experts + other
        host = host_memory(shape)
        lines.append(
            f"  note: the {experts / 1e9:.1f}B expert weights are in NF4 "
            f"({experts * NF4_BYTES / GIB:.1f} GiB; 16-bit they would take {experts * 2 / GIB:.0f} "
            "GiB), dequantized one projection of a layer at a time. Loading reads the checkpoint "
            f"one layer at a time: about {host['peak'] / GIB:.1f} GiB of host RAM (one layer "
            f"{host['one layer'] / GIB:.1f} GiB or one embedding {host['one embedding'] / GIB:.1f} "
            f"GiB, beside the process's own {host['process'] / GIB:.1f}); the whole model in 16 "
            f"bits would be {everything * 2 / GIB:.0f} GiB."
        )
    lines.append(merge_line(values, shape))
    smallest = next((size for size in GPU_SIZES_GB if parts["total"] <= size * 1e9), None)
    lines.append(
        f"  smallest GPU of {'/'.join(map(str, GPU_SIZES_GB))} GB that fits it: "
        + (f"{smallest} GB" if smallest else "none")
    )
    sizes = (gpu_memory_gb,) if gpu_memory_gb else GPU_SIZES_GB
    for size in sizes:
        fits = parts["total"] <= size * 1e9
        batch, seq = largest(values, shape, size, "batch"), largest(values, shape, size, "seq")
        verdict = "fits" if fits else "does NOT fit"
        room = f"largest batch {batch}{_cap(batch, 'per_device_train_batch_size')} at {s} "
        room += f"tokens, longest {seq}{_cap(seq, 'max_seq_length')} tokens at batch {b}"
        lines.append(
            f"  {size:>4} GB GPU: {verdict}; {room if batch or seq else 'not even batch 1'}"
        )
        faster = same_effective_batch(values, batch) if fits else None
        if faster:
            effective = b * values["gradient_accumulation_steps"]
            lines.append(
                f"       the same effective batch ({effective}), fewer micro-batches: "
                f'"per_device_train_batch_size": {faster[0]}, "gradient_accumulation_steps": '
                f"{faster[1]}"
            )
    return "\n".join(lines) + "\n"
