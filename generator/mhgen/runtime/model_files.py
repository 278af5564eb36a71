# ---- libraries, the model's files, the device

import functools
import importlib.util  # importlib.import_module too
import json
import os
import sys
from pathlib import Path


def print_main(message: str) -> None:
    """Print on the main process only (rank 0 under torchrun or accelerate launch)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(message, flush=True)


def attention_kernel(name: str | None, on_gpu: bool) -> str | None:
    """The attention kernel the model is loaded with: ``name``, but eager for flex attention on
    the CPU, where torch has no backward for it (and transformers no attention sinks): eager
    computes the same values there."""
    if name == "flex_attention" and not on_gpu:
        print_main("attention: eager on the CPU (flex_attention trains on a GPU only)")
        return "eager"
    return name


def peak_host_gib() -> float:
    """This process's peak resident memory in GiB: VmHWM, which a new program starts afresh
    (ru_maxrss, the fallback off Linux, survives fork and exec from a larger parent)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return int(next(x for x in f if x.startswith("VmHWM:")).split()[1]) / 2**20  # kB
    except (OSError, StopIteration):
        import resource  # POSIX only: imported where it is used

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# the versions mhgen's test suite ran this script with (mhgen's pins.py; a test keeps them equal)
TESTED_VERSIONS = {
    "torch": "2.13.0",
    "transformers": "5.24.0",
    "trl": "1.16.0",
    "peft": "0.21.2",
    "bitsandbytes": "0.50.2",
    "accelerate": "1.15.0",
    "datasets": "5.2.0",
}


def note_untested_versions() -> None:
    """One line at the start where an installed library's version is not the one this script
    was tested with (the script relies on some of the Trainer's private methods)."""
    import importlib.metadata

    differ = []
    for name, tested in TESTED_VERSIONS.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # require() names what a run needs and is missing
        if installed.split("+")[0] != tested:
            differ.append(f"{name} {installed} (tested: {tested})")
    if differ:
        print_main(
            f"note: not the versions this script was tested with: {', '.join(differ)}; if "
            "something breaks, install the tested ones (mhgen bundle writes them as requirements)"
        )


def require(*modules: str) -> None:
    """Stop with one line when a library this run needs cannot be imported."""

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        sys.exit(
            f"error: this run needs {', '.join(missing)}, not installed here: install the "
            f"dependencies listed at the top of this script (uv run {Path(sys.argv[0]).name} does)"
        )


def from_hub(load, what: str, base_model: str):
    """``load()`` from a local folder or the Hugging Face cache, else from the Hub, saying so;
    one line naming base_model when neither has it."""
    from huggingface_hub.errors import HFValidationError
    from transformers.utils import logging

    if not sys.stderr.isatty():  # a log file: no "Loading weights" bar redrawn with \r
        logging.disable_progress_bar()
    try:
        return load(local_files_only=True)
    except OSError:  # not downloaded yet
        pass
    print_main(f"downloading {what} of {base_model} from the Hugging Face Hub")
    try:
        return load(local_files_only=False)
    except (OSError, HFValidationError) as exc:
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        sys.exit(f"error: cannot load {what} of base_model {base_model!r}: {reason}")


def load_tokenizer(base_model: str):
    """The model's tokenizer, padding with its end-of-sequence token where it has no pad token."""
    from transformers import AutoTokenizer

    load = functools.partial(AutoTokenizer.from_pretrained, base_model)
    tokenizer = from_hub(load, "the tokenizer", base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# the optimizers that need CUDA; on the CPU torch's fused AdamW runs instead
CUDA_OPTIMIZERS = ("paged_adamw_8bit", "adamw_8bit")


def check_device(dtype: str, optim: str, use_liger_kernel: bool, training: bool = True) -> bool:
    """True on a CUDA GPU. Settings this machine cannot run stop here, naming the config key
    (``training`` False: the model only generates, for --sample)."""
    import torch

    on_gpu = torch.cuda.is_available()
    if dtype == "bfloat16" and on_gpu and not torch.cuda.is_bf16_supported():
        sys.exit('error: this GPU has no bfloat16 support; set "dtype": "float16" in the config')
    if dtype == "float16" and not on_gpu:
        sys.exit('error: float16 training needs a CUDA GPU; set "dtype": "float32" in the config')
    if not on_gpu and not training:
        print_main("note: no CUDA GPU found: generating on the CPU")
    elif not on_gpu:
        print_main("note: no CUDA GPU found: training on the CPU, which suits only smoke tests")
        if optim in CUDA_OPTIMIZERS:
            print_main(f'note: "optim": "{optim}" needs CUDA; using adamw_torch_fused on the CPU')
        if use_liger_kernel:
            print_main('note: "use_liger_kernel" needs CUDA; Liger kernels are off on the CPU')
    return on_gpu


def nf4_config(dtype):
    """bitsandbytes' 4-bit settings for a QLoRA base model: every linear layer in NF4 with its
    quantization constants quantized too (double quantization), computing and stored in
    ``dtype``; embeddings, norms and lm_head stay in ``dtype`` (no float32 upcast: LoRA's own
    weights train in float32, and the frozen ones need no more)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,
    )


def read_checkpoint(names, files: dict) -> dict:
    """The named tensors of the checkpoint, into CPU memory; each file is open only while read."""
    from safetensors import safe_open

    tensors = {}
    for file in sorted({files[name] for name in names}):
        with safe_open(file, framework="pt") as f:
            tensors |= {name: f.get_tensor(name) for name in names if files[name] == file}
    return tensors


def checkpoint_files(base_model: str) -> dict:
    """Where each tensor of the model's safetensors checkpoint is: a local folder, else the
    Hugging Face cache, else downloaded into it."""
    from huggingface_hub import snapshot_download
    from safetensors import safe_open

    folder = Path(base_model)
    if not folder.is_dir():
        # the checkpoint at the top of the repository only ("*" would match original/ too)
        wanted = ["config.json", "generation_config.json", "model*.safetensors*"]
        download = functools.partial(snapshot_download, base_model, allow_patterns=wanted)
        folder = Path(from_hub(download, "the weights", base_model))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        sys.exit(
            f"error: {folder} holds no model.safetensors: base_model needs safetensors weights"
        )
    with safe_open(single, framework="pt") as f:
        return dict.fromkeys(f.keys(), single)
