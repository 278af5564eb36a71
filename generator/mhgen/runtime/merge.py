# ---- --merge: the base model with the adapter merged into its weights

import json
import os
import shutil
import sys
from pathlib import Path

from .model_files import checkpoint_files, peak_host_gib, print_main, read_checkpoint
from .output_folder import STAGING, promote


def lora_pairs(output_dir: Path) -> tuple[dict, float]:
    """The adapter in output_dir as {checkpoint tensor it adapts: (lora_A, lora_B)}, and its
    scaling, lora_alpha / r (from adapter_config.json, as PEFT loads it)."""
    from safetensors.torch import load_file

    config = json.loads((output_dir / "adapter_config.json").read_text(encoding="utf-8"))
    saved = load_file(output_dir / "adapter_model.safetensors")
    pairs = {}
    for key in saved:
        module, _, kind = key.removeprefix("base_model.model.").rpartition(".lora_")
        if kind not in ("A.weight", "B.weight"):
            sys.exit(f"error: --merge merges LoRA on linear layers, and {output_dir} holds {key}")
        if kind == "A.weight":
            pairs[module + ".weight"] = saved[key], saved[key.replace(".lora_A.", ".lora_B.")]
    return pairs, config["lora_alpha"] / config["r"]


def merged_weight(name: str, weight, lora_a, lora_b, scaling: float, dtype, base_model: str):
    """weight + scaling * lora_B @ lora_A, computed in float32, in ``dtype``."""
    if not weight.is_floating_point() or weight.shape != (lora_b.shape[0], lora_a.shape[1]):
        sys.exit(
            f"error: the checkpoint of {base_model} holds {name} as {weight.dtype} "
            f"{tuple(weight.shape)}, and the adapter in --output-dir adapts a "
            f"{lora_b.shape[0]} x {lora_a.shape[1]} weight: --merge needs the 16-bit checkpoint "
            "the adapter was trained on"
        )
    return (weight.float() + scaling * (lora_b.float() @ lora_a.float())).to(dtype)


def layer_groups(files: dict) -> list[list[str]]:
    """The checkpoint's tensor names, a group per decoder layer and one per other tensor
    (embeddings, the final norm, lm_head): the merged model is read and written a group at a
    time, each its own file, so host memory holds one layer, never a whole checkpoint file."""
    groups = {}
    for name in files:
        layer = ".".join(name.split(".")[:3]) if name.startswith("model.layers.") else name
        groups.setdefault(layer, []).append(name)
    return list(groups.values())


def merge_adapter(output_dir: Path, base_model: str, dtype_name: str) -> None:
    """output_dir/merged: ``base_model`` in ``dtype_name`` with the adapter merged into its
    weights, with the tokenizer and chat template, for from_pretrained and vLLM. The 16-bit
    checkpoint is read a layer at a time (never the 4-bit weights trained on), written into
    STAGING and renamed into place. Tensors that are not floating point (experts a checkpoint
    ships quantized, such as MXFP4) are copied as they are, and config.json's
    quantization_config with them. Under torchrun the main process merges, once the others have
    left."""
    if int(os.environ.get("RANK", "0")) != 0:
        return

    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    pairs, scaling = lora_pairs(output_dir)
    files = checkpoint_files(base_model)
    source = next(iter(files.values())).parent
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    quantization = (config.get("quantization_config") or {}).get("quant_method")
    if quantization not in (None, "mxfp4"):
        sys.exit(f"error: --merge needs a 16-bit base_model, and {base_model} is in {quantization}")
    unknown = sorted(set(pairs) - set(files))
    if unknown:
        sys.exit(
            f"error: the adapter in {output_dir} adapts {unknown[0]}, which the checkpoint of "
            f"{base_model} does not hold: it was trained on another base_model"
        )
    staged = output_dir / STAGING / "merged"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    groups = layer_groups(files)
    print_main(f"merging the adapter into {base_model}'s checkpoint, one layer at a time")
    dtype, written, weight_map = getattr(torch, dtype_name), 0, {}
    for i, names in enumerate(groups, 1):
        file = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        tensors = read_checkpoint(names, files)
        for name, tensor in tensors.items():
            if name in pairs:
                tensors[name] = merged_weight(
                    name, tensor, *pairs[name], scaling, dtype, base_model
                )
            elif tensor.is_floating_point():
                tensors[name] = tensor.to(dtype)
            written += tensors[name].nbytes
        save_file(tensors, staged / file, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(tensors, file)
        del tensors
    index = {"metadata": {"total_size": written}, "weight_map": weight_map}
    (staged / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config["dtype"] = dtype_name  # transformers 5's key; older configs name it torch_dtype
    if "torch_dtype" in config:
        config["torch_dtype"] = dtype_name
    (staged / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if (source / "generation_config.json").is_file():
        shutil.copyfile(source / "generation_config.json", staged / "generation_config.json")
    AutoTokenizer.from_pretrained(output_dir).save_pretrained(staged)  # with its chat template
    promote(staged, output_dir / "merged")
    shutil.rmtree(output_dir / STAGING)
    peak = peak_host_gib()
    what = f", the experts kept in {quantization}" if quantization else ""
    print_main(
        f"merged {len(pairs)} LoRA pairs into {base_model} in {dtype_name}{what}: "
        f"{output_dir / 'merged'}, {written / 2**30:.2f} GiB; peak host memory {peak:.1f} GiB"
    )
