# ---- --merge: the base model with the adapter merged into its weights

import json
import os
import shutil
import sys
from pathlib import Path

from .model_files import checkpoint_files, peak_host_gib, print_main, read_checkpoint
from .mxfp4 import dequantize_mxfp4, quantize_mxfp4
from .output_folder import STAGING, promote

# How each mixture-of-experts model holds its fused experts' parameters: (experts, in, out)
# (gpt-oss: x @ weight) or (experts, out, in) (Qwen3-MoE: as nn.Linear), by config.model_type
EXPERTS_IN_OUT = {"gpt_oss": True, "qwen3_moe": False}
MERGE_FORMATS = ("dtype", "mxfp4")  # --merge-format: every weight in DTYPE, or experts in MXFP4
FUSED_EXPERTS = (".experts.gate_up_proj", ".experts.down_proj")
FUSED_EXPERTS_BLOCKS = tuple(name + "_blocks" for name in FUSED_EXPERTS)
# config.json's quantization_config of openai/gpt-oss-20b and -120b: what stays in 16 bits
GPT_OSS_MXFP4 = {
    "modules_to_not_convert": [
        "model.layers.*.self_attn",
        "model.layers.*.mlp.router",
        "model.embed_tokens",
        "lm_head",
    ],
    "quant_method": "mxfp4",
}


def lora_pairs(output_dir: Path) -> tuple[dict, float, int]:
    """The adapter in output_dir as {model parameter it adapts: (lora_A, lora_B)}, its scaling
    (lora_alpha / r, as PEFT loads it) and its rank r. LoRA on a linear layer adapts
    ``<module>.weight``; LoRA on fused experts (PEFT's target_parameters) adapts the parameter
    itself: PEFT wraps the experts once per parameter, in target_parameters' order, so the last
    one's LoRA is ``experts.lora_A`` and each one before it a ``base_layer.`` deeper."""
    from safetensors.torch import load_file

    config = json.loads((output_dir / "adapter_config.json").read_text(encoding="utf-8"))
    saved = load_file(output_dir / "adapter_model.safetensors")
    wrapped = [t.rpartition(".") for t in config.get("target_parameters") or ()]
    pairs = {}
    for key in saved:
        module, _, kind = key.removeprefix("base_model.model.").rpartition(".lora_")
        if kind not in ("A.weight", "B.weight"):
            sys.exit(f"error: --merge merges LoRA on weights, and {output_dir} holds {key}")
        if kind == "B.weight":
            continue
        depth, module = module.count(".base_layer"), module.replace(".base_layer", "")
        parameters = [name for owner, _, name in wrapped if module.endswith("." + owner)]
        name = f"{module}.{parameters[-1 - depth]}" if parameters else module + ".weight"
        pairs[name] = saved[key], saved[key.replace(".lora_A.", ".lora_B.")]
    scaling = config["lora_alpha"] / (
        config["r"] ** 0.5 if config.get("use_rslora") else config["r"]
    )
    return pairs, scaling, config["r"]


def merged_weight(name: str, weight, delta, dtype, base_model: str):
    """weight + delta, computed in float32, in ``dtype``."""
    if not weight.is_floating_point() or weight.shape != delta.shape:
        sys.exit(
            f"error: the checkpoint of {base_model} holds {name} as {weight.dtype} "
            f"{tuple(weight.shape)}, and the adapter in --output-dir changes a "
            f"{' x '.join(map(str, delta.shape))} weight: --merge needs the 16-bit (or MXFP4) "
            "checkpoint the adapter was trained on"
        )
    return (weight.float() + delta).to(dtype)


def linear_delta(lora_a, lora_b, scaling: float):
    """scaling * lora_B @ lora_A in float32: LoRA's change of a linear layer's weight."""
    return scaling * (lora_b.float() @ lora_a.float())


def expert_delta(pair: tuple, lora: tuple, expert: int, in_out: bool):
    """One expert's change of a fused experts' parameter, as PEFT computes it for
    target_parameters: lora_A's rows are (expert, rank), lora_B's columns (rank, expert). In
    float32, (in x out) when the model holds the expert's weight so, else (out x in).
    ``pair``: (lora_A, lora_B); ``lora``: (scaling, rank)."""
    (lora_a, lora_b), (scaling, rank) = pair, lora
    experts = lora_a.shape[0] // rank
    a = lora_a.reshape(experts, rank, -1)[expert].float()
    b = lora_b.reshape(lora_b.shape[0], rank, experts)[:, :, expert].float()
    delta = scaling * (b @ a)
    return delta.t() if in_out else delta


def merge_fused_experts(tensors: dict, name: str, pair, lora: tuple, settings: tuple) -> None:
    """A layer's fused experts' parameter ``name`` (gpt-oss's, or a fused Qwen3-MoE
    checkpoint's), read from 16 bits or from MXFP4 (``name``_blocks and _scales), with the
    change of its LoRA ``pair`` (None: unchanged), written back into ``tensors`` in the merged
    model's dtype, or in MXFP4 as gpt-oss's checkpoint holds it. One expert at a time in
    float32: the temporaries are one expert's weight, never the whole stack's. ``settings``:
    (in_out, dtype, mxfp4, base_model)."""
    import torch

    in_out, dtype, mxfp4, base_model = settings
    blocks, scales = tensors.pop(name + "_blocks", None), tensors.pop(name + "_scales", None)
    weight = tensors.pop(name, None)
    if pair is None and mxfp4 == (blocks is not None):  # already in the format written
        if blocks is None:
            tensors[name] = weight.to(dtype)
        else:
            tensors[name + "_blocks"], tensors[name + "_scales"] = blocks, scales
        return
    out, experts = {}, len(weight if blocks is None else blocks)  # filled an expert at a time
    for e in range(experts):
        if blocks is None:
            w = weight[e].float()
        else:
            w = dequantize_mxfp4(blocks[e], scales[e], torch.float32)
        if pair is not None:
            delta = expert_delta(pair, lora, e, in_out)
            w = merged_weight(f"{name} (expert {e})", w, delta, torch.float32, base_model)
        pieces = {"": w}
        if mxfp4:
            pieces = dict(zip(("_blocks", "_scales"), quantize_mxfp4(w), strict=True))
        for suffix, piece in pieces.items():
            if e == 0:
                kind = dtype if piece.is_floating_point() else piece.dtype
                out[name + suffix] = torch.empty((experts, *piece.shape), dtype=kind)
            out[name + suffix][e] = piece
    tensors |= out


def merge_per_expert(tensors: dict, name: str, pair, lora: tuple, settings: tuple) -> None:
    """The change of a fused experts' parameter ``name`` merged into a checkpoint that holds
    each expert's own linear layers (Qwen3-MoE's mlp.experts.N.gate_proj, up_proj, down_proj):
    gate_up's rows are gate's, then up's, as transformers stacks them."""
    _, dtype, _, base_model = settings
    owner, _, parameter = name.rpartition(".")
    parts = ("gate_proj", "up_proj") if parameter == "gate_up_proj" else ("down_proj",)
    for e in range(pair[0].shape[0] // lora[1]):
        delta = expert_delta(pair, lora, e, in_out=False)
        for part, change in zip(parts, delta.chunk(len(parts)), strict=True):
            key = f"{owner}.{e}.{part}.weight"
            if key not in tensors:
                sys.exit(
                    f"error: the checkpoint of {base_model} has no {key}, which the adapter changes"
                )
            tensors[key] = merged_weight(key, tensors[key], change, dtype, base_model)


def merge_group(tensors: dict, pairs: dict, lora: tuple, settings: tuple) -> None:
    """The adapter merged into one group of checkpoint tensors (a decoder layer), in place:
    linear layers, fused experts and per-expert layers."""
    _, dtype, _, base_model = settings
    fused = {n.removesuffix("_blocks") for n in tensors if n.endswith(FUSED_EXPERTS_BLOCKS)}
    fused |= {n for n in tensors if n.endswith(FUSED_EXPERTS) and tensors[n].dim() == 3}
    for name in sorted(fused):
        merge_fused_experts(tensors, name, pairs.get(name), lora, settings)
    for name, pair in pairs.items():
        if name in fused:
            continue
        if name.endswith(FUSED_EXPERTS):
            merge_per_expert(tensors, name, pair, lora, settings)
        else:
            tensors[name] = merged_weight(
                name, tensors[name], linear_delta(*pair, lora[0]), dtype, base_model
            )
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            tensors[name] = tensor.to(dtype)


def held_as(files: dict, name: str) -> str | None:
    """The checkpoint's tensor that holds the model parameter ``name``: itself, its MXFP4
    blocks, or (fused experts) the first expert's linear layer; None if there is none."""
    owner, _, parameter = name.rpartition(".")
    per_expert = "gate_proj" if parameter == "gate_up_proj" else "down_proj"
    names = (name, name + "_blocks", f"{owner}.0.{per_expert}.weight")
    return next((n for n in names if n in files), None)


def layer_groups(files: dict) -> list[list[str]]:
    """The checkpoint's tensor names, a group per decoder layer and one per other tensor
    (embeddings, the final norm, lm_head): the merged model is read and written a group at a
    time, each its own file, so host memory holds one layer, never a whole checkpoint file."""
    groups = {}
    for name in files:
        layer = ".".join(name.split(".")[:3]) if name.startswith("model.layers.") else name
        groups.setdefault(layer, []).append(name)
    return list(groups.values())


def merge_adapter(output_dir: Path, base_model: str, dtype_name: str, fmt: str = "dtype") -> None:
    """output_dir/merged: ``base_model`` with the adapter merged into its weights, with the
    tokenizer and chat template, for from_pretrained and vLLM. Every weight is in
    ``dtype_name``, but a checkpoint's MXFP4 experts that the adapter does not change (copied as
    they are, quantization_config with them) and, with ``fmt`` "mxfp4", gpt-oss's experts,
    written in MXFP4 as its checkpoint ships them. The 16-bit (or MXFP4) checkpoint is read a
    layer at a time (never the 4-bit weights trained on), written into STAGING and renamed into
    place. Under torchrun the main process merges, once the others have left."""
    if int(os.environ.get("RANK", "0")) != 0:
        return

    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    pairs, scaling, rank = lora_pairs(output_dir)
    files = checkpoint_files(base_model)
    source = next(iter(files.values())).parent
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    quantization = (config.get("quantization_config") or {}).get("quant_method")
    if quantization not in (None, "mxfp4"):
        sys.exit(f"error: --merge needs a 16-bit base_model, and {base_model} is in {quantization}")
    in_out = EXPERTS_IN_OUT.get(config.get("model_type"))
    if fmt == "mxfp4" and in_out is not True:
        sys.exit(
            f"error: --merge-format mxfp4 is gpt-oss's format, and {base_model} is not gpt-oss"
        )
    unknown = sorted(name for name in pairs if held_as(files, name) is None)
    if unknown:
        sys.exit(
            f"error: the adapter in {output_dir} adapts {unknown[0]}, which the checkpoint of "
            f"{base_model} does not hold: it was trained on another base_model"
        )
    experts = [name for name in pairs if name.endswith(FUSED_EXPERTS)]
    if experts and in_out is None:
        sys.exit(f"error: --merge knows the experts of gpt-oss and Qwen3-MoE, not {base_model}'s")
    # MXFP4 experts the adapter leaves as they are stay in MXFP4 (exact, and as small)
    mxfp4 = fmt == "mxfp4" or (quantization == "mxfp4" and not experts)
    staged = output_dir / STAGING / "merged"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    groups = layer_groups(files)
    group_of = {name: i for i, names in enumerate(groups) for name in names}
    at = {name: group_of[held_as(files, name)] for name in pairs}
    print_main(f"merging the adapter into {base_model}'s checkpoint, one layer at a time")
    dtype, written, weight_map = getattr(torch, dtype_name), 0, {}
    settings = (in_out, dtype, mxfp4, base_model)
    for i, names in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = read_checkpoint(names, files)
        mine = {name: pair for name, pair in pairs.items() if at[name] == i}
        merge_group(tensors, mine, (scaling, rank), settings)
        written += sum(tensor.nbytes for tensor in tensors.values())
        save_file(tensors, staged / file, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(tensors, file)
        del tensors
    index = {"metadata": {"total_size": written}, "weight_map": weight_map}
    (staged / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config["dtype"] = dtype_name  # transformers 5's key; older configs name it torch_dtype
    if "torch_dtype" in config:
        config["torch_dtype"] = dtype_name
    if mxfp4:
        config["quantization_config"] = config.get("quantization_config") or GPT_OSS_MXFP4
    else:
        config.pop("quantization_config", None)
    (staged / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if (source / "generation_config.json").is_file():
        shutil.copyfile(source / "generation_config.json", staged / "generation_config.json")
    AutoTokenizer.from_pretrained(output_dir).save_pretrained(staged)  # with its chat template
    promote(staged, output_dir / "merged")
    shutil.rmtree(output_dir / STAGING)
    peak = peak_host_gib()
    if mxfp4:
        what = ", the experts " + (
            "in MXFP4" if experts or quantization is None else "kept in mxfp4"
        )
    else:
        what = ""
    print_main(
        f"merged {len(pairs)} LoRA pairs into {base_model} in {dtype_name}{what}: "
        f"{output_dir / 'merged'}, {written / 2**30:.2f} GiB; peak host memory {peak:.1f} GiB"
    )
