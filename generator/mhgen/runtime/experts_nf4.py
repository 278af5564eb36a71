# ---- 4-bit weights for a mixture-of-experts model (gpt-oss, Qwen3-MoE)
#
# transformers keeps all experts of a layer in fused 3-D weights, which bitsandbytes' 4-bit loader
# does not quantize: they would stay in 16 bits (about 40 GB for gpt-oss-20b, 60 GB for
# Qwen3-Coder-30B-A3B). So the script loads the checkpoint itself, one decoder layer at a time
# (load_model_nf4): attention's linear layers become bitsandbytes NF4 layers, as bitsandbytes'
# loader would make them, and each of a layer's two expert projections (gate_up and down, every
# expert's) becomes ONE NF4 buffer with one quantization state (ExpertsNF4). In forward the tokens
# are sorted by expert, and the projection's whole stack is dequantized once, multiplied group by
# group in one grouped GEMM, and freed; backward dequantizes it again for the input's gradient
# (the base weights are frozen), so no dequantized weight is kept between the two. Host memory
# holds one layer of the checkpoint at a time (or one embedding), never the whole model. LoRA
# can adapt the experts too (add_expert_lora): per projection two grouped matmuls on (experts,
# in, rank) and (experts, rank, out) weights, saved in PEFT's layout for fused experts
# (target_parameters), so that the adapter loads onto transformers' own model.

import functools
import os
import sys
from pathlib import Path

from .model_files import (
    attention_kernel,
    checkpoint_files,
    from_hub,
    peak_host_gib,
    print_main,
    read_checkpoint,
)


def linear_nf4(weight, bias, device, dtype):
    """A frozen bitsandbytes Linear4bit holding ``weight`` (out x in) in NF4 on ``device``."""
    import bitsandbytes as bnb
    import torch

    out_features, in_features = weight.shape
    layer = bnb.nn.Linear4bit(
        in_features,
        out_features,
        bias=bias is not None,
        compute_dtype=dtype,
        quant_type="nf4",
        device="meta",
    )
    layer.weight = bnb.nn.Params4bit(
        weight.detach().to(device, dtype).contiguous(),
        requires_grad=False,
        compress_statistics=True,  # double quantization, as bitsandbytes' loader does
        quant_type="nf4",
        module=layer,
    ).to(device)  # quantizes on the way
    if bias is not None:
        bias = bias.detach().to(device, dtype, copy=True)
        layer.bias = torch.nn.Parameter(bias, requires_grad=False)
    return layer


def has_grouped_gemm(device, dtype) -> bool:
    """Whether this torch multiplies tokens grouped by expert with a stack of expert weights in one
    grouped GEMM (torch._grouped_mm) on this device and dtype: recent torch on the CPU and on CUDA
    GPUs from compute capability 8.0. Elsewhere the experts run one after another."""
    import torch

    if not hasattr(torch, "_grouped_mm"):
        return False
    x = torch.ones(16, 16, device=device, dtype=dtype)
    w = torch.ones(2, 16, 16, device=device, dtype=dtype)
    try:
        torch._grouped_mm(x, w, offs=torch.tensor([8, 16], dtype=torch.int32, device=device))
    except (RuntimeError, NotImplementedError):
        return False
    return True


def grouped_matmul(x, weight, offsets, grouped_gemm: bool):
    """Rows offsets[e - 1]:offsets[e] of x (tokens sorted by expert) times weight[e] (in x out)."""
    import torch

    if grouped_gemm:
        return torch._grouped_mm(x, weight, offs=offsets)
    pieces, start = [], 0
    for e, end in enumerate(offsets.tolist()):
        pieces.append(x[start:end] @ weight[e])
        start = end
    return torch.cat(pieces)


def gpt_oss_activation(gate_up, alpha: float, limit: float):
    """gpt-oss's clamped SwiGLU on interleaved gate/up columns (transformers' GptOssExperts)."""
    gate, up = gate_up[..., ::2], gate_up[..., 1::2]
    gate = gate.clamp(max=limit)
    up = up.clamp(min=-limit, max=limit)
    return (up + 1) * gate * (gate * alpha).sigmoid()


def gpt_oss_expert_weights(tensors: dict, device, dtype):
    """A gpt-oss layer's experts from its checkpoint tensors: (gate_up, down), each (weight,
    bias), weights as transformers keeps them, (experts x in x out), on ``device`` in ``dtype``.
    The official checkpoint holds them in MXFP4 (32 four-bit values sharing a power-of-two
    scale), dequantized here on the device with transformers' own unpacking; the weights of a
    16-bit checkpoint are read as they are."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    projections = []
    for name in ("gate_up_proj", "down_proj"):
        key = f"mlp.experts.{name}"
        if key + "_blocks" in tensors:
            blocks = tensors.pop(key + "_blocks").to(device)
            scales = tensors.pop(key + "_scales").to(device)
            # a million rows at a time: the unpacking's index tensors stay small
            weight = convert_moe_packed_tensors(blocks, scales, dtype=dtype, rows_per_chunk=1 << 20)
        else:
            weight = tensors.pop(key).to(device, dtype)
        projections.append((weight, tensors.pop(key + "_bias").to(device, dtype, copy=True)))
    return projections


def qwen3_moe_activation(gate_up, act_fn):
    """Qwen3-MoE's SwiGLU: the first half of gate_up is the gate (transformers' Qwen3MoeExperts)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return act_fn(gate) * up


def qwen3_moe_expert_weights(tensors: dict, device, dtype):
    """A Qwen3-MoE layer's experts from its checkpoint tensors: (gate_up, down), each (weight,
    None), weights as transformers keeps them, (experts x out x in), on ``device`` in ``dtype``.
    The checkpoint holds each expert's gate_proj, up_proj and down_proj; gate and up are stacked
    into gate_up as transformers stacks them (a checkpoint saved fused holds gate_up_proj)."""
    import torch

    if "mlp.experts.gate_up_proj" in tensors:
        gate_up = tensors.pop("mlp.experts.gate_up_proj").to(device, dtype)
        return (gate_up, None), (tensors.pop("mlp.experts.down_proj").to(device, dtype), None)
    gate_up, down = [], []
    for e in range(sum(name.endswith(".down_proj.weight") for name in tensors)):
        expert = f"mlp.experts.{e}."
        gate, up = tensors.pop(expert + "gate_proj.weight"), tensors.pop(expert + "up_proj.weight")
        gate_up.append(torch.cat([gate, up]).to(device, dtype))
        down.append(tensors.pop(expert + "down_proj.weight").to(device, dtype))
    return (torch.stack(gate_up), None), (torch.stack(down), None)


@functools.cache
def experts_nf4_class():
    """ExpertsNF4, defined here because it needs torch (imported only when training)."""
    import bitsandbytes.functional as bnb_functional
    import torch

    class DequantizedMatmul(torch.autograd.Function):
        """x @ W per expert group, W one projection of every expert, dequantized from NF4 for
        the call and freed after it; backward dequantizes it again for the input's gradient."""

        @staticmethod
        def forward(ctx, x, experts, name, offsets):
            ctx.experts, ctx.name = experts, name
            ctx.save_for_backward(offsets)
            return experts.matmul(x, experts.dequantize(name), offsets)

        @staticmethod
        def backward(ctx, grad):
            (offsets,) = ctx.saved_tensors
            weight = ctx.experts.dequantize(ctx.name).transpose(-2, -1)
            return ctx.experts.matmul(grad.contiguous(), weight, offsets), None, None, None

    class ExpertsNF4(torch.nn.Module):
        """One layer's experts in NF4: ``forward(hidden_states, top_k_index, top_k_weights)`` as
        transformers' experts are called, with the model's own routing. ``weights``: (gate_up,
        down), each (stack, bias or None); ``in_out``: the stacks are (experts x in x out), as
        transformers keeps gpt-oss's, else (experts x out x in)."""

        def __init__(self, weights, activation, in_out: bool, device, dtype):
            super().__init__()
            self.activation, self.in_out, self.dtype = activation, in_out, dtype
            self.grouped_gemm = has_grouped_gemm(device, dtype)
            self.shapes, self.states, self.biased = {}, {}, set()
            for name, (weight, bias) in zip(("gate_up", "down"), weights, strict=True):
                # every expert is a whole number of NF4's 64-value blocks, so one quantization of
                # the whole stack quantizes each expert exactly as its own would
                self.shapes[name] = weight.shape
                packed, self.states[name] = bnb_functional.quantize_4bit(
                    weight.reshape(-1, weight.shape[-1]),
                    blocksize=64,
                    compress_statistics=True,  # double quantization, as for the linear layers
                    quant_type="nf4",
                )
                self.register_buffer(name + "_nf4", packed, persistent=False)
                if bias is not None:
                    self.register_parameter(
                        name + "_bias", torch.nn.Parameter(bias, requires_grad=False)
                    )
                    self.biased.add(name)
            self.num_experts = weight.shape[0]
            self.lora = torch.nn.ModuleDict()  # add_lora fills it
            self.peft_layer = ()  # a PEFT LoRA layer whose switch this LoRA follows (add_lora)

        def dequantize(self, name: str):
            """The projection's stack in the compute dtype, in the checkpoint's layout."""
            packed = getattr(self, name + "_nf4")
            return bnb_functional.dequantize_4bit(packed, self.states[name]).view(self.shapes[name])

        def matmul(self, x, weight, offsets):
            """Each group of x times its expert's weight (as in x out)."""
            w = weight if self.in_out else weight.transpose(-2, -1)
            return grouped_matmul(x.to(w.dtype), w, offsets, self.grouped_gemm)

        def project(self, x, name: str, offsets, expert_of_row):
            """The projection of x (rows sorted by expert, expert_of_row[i] the expert of row i)."""
            y = DequantizedMatmul.apply(x, self, name, offsets)
            if name in self.biased:
                y = y + getattr(self, name + "_bias")[expert_of_row]
            if name in self.lora and not any(p.disable_adapters for p in self.peft_layer):
                y = y + self.lora_delta(x, name, offsets)
            return y

        def forward(self, hidden_states, top_k_index, top_k_weights):
            tokens, top_k = top_k_index.shape
            # one row per (token, chosen expert), sorted by expert: each expert's rows are a group
            expert_of_row, order = top_k_index.reshape(-1).sort(stable=True)
            x = hidden_states[order // top_k]
            counts = torch.bincount(expert_of_row, minlength=self.num_experts)
            offsets = counts.cumsum(0).to(torch.int32)
            h = self.activation(self.project(x, "gate_up", offsets, expert_of_row))
            y = self.project(h, "down", offsets, expert_of_row)
            y = y * top_k_weights.reshape(-1)[order].unsqueeze(-1).to(y.dtype)
            rows = torch.empty_like(y)
            rows[order] = y  # back to (token, choice) order; the sum is deterministic
            return rows.view(tokens, top_k, -1).sum(dim=1).to(hidden_states.dtype)

        def add_lora(self, names, rank: int, alpha: float, peft_layer) -> None:
            """LoRA on projections ``names`` in PEFT's layout for fused experts: lora_A is
            (rank * experts x in), lora_B (out x rank * experts) and zero at the start. It is
            off while ``peft_layer``'s adapters are (PEFT's disable_adapter(): the base model,
            as DPO's reference forward runs it)."""
            self.rank, self.scaling = rank, alpha / rank
            self.peft_layer = () if peft_layer is None else (peft_layer,)
            for name in names:
                experts, *out_in = self.shapes[name]
                d_in, d_out = out_in if self.in_out else reversed(out_in)
                device = getattr(self, name + "_nf4").device
                pair = torch.nn.ModuleDict(
                    {
                        "lora_A": torch.nn.Linear(d_in, rank * experts, bias=False, device=device),
                        "lora_B": torch.nn.Linear(rank * experts, d_out, bias=False, device=device),
                    }
                )
                torch.nn.init.zeros_(pair["lora_B"].weight)
                self.lora[name] = pair

        def lora_delta(self, x, name: str, offsets):
            """scaling x A_e^T B_e^T per expert group: two grouped matmuls."""
            pair, experts = self.lora[name], self.num_experts
            a = pair["lora_A"].weight.to(x.dtype)  # (rank * experts) x in
            b = pair["lora_B"].weight.to(x.dtype)  # out x (rank * experts)
            a = a.view(experts, self.rank, -1).transpose(1, 2)  # experts x in x rank
            b = b.view(-1, self.rank, experts).permute(2, 1, 0).contiguous()  # experts x rank x out
            low = grouped_matmul(x, a, offsets, self.grouped_gemm)
            return self.scaling * grouped_matmul(low, b, offsets, self.grouped_gemm)

    return ExpertsNF4


def add_expert_lora(model, projections: list[str], rank: int, alpha: float) -> None:
    """LoRA on the NF4 experts' ``projections`` (gate_up, down) of a PEFT model, saved with the
    adapter as PEFT saves LoRA on transformers' fused experts, so that the adapter loads onto
    transformers' own model."""
    # any of PEFT's LoRA layers (the config adapts one or more linear layers besides): PEFT
    # turns them all on and off together
    peft_layer = next((m for m in model.modules() if getattr(m, "lora_A", None)), None)
    for module in model.modules():
        if isinstance(module, experts_nf4_class()):
            module.add_lora(projections, rank, alpha, peft_layer)
    parameters = [f"mlp.experts.{p}_proj" for p in projections]
    model.peft_config["default"].target_parameters = parameters
    model.save_pretrained = functools.partial(save_with_expert_lora, model, model.save_pretrained)


def expert_lora_weights(model) -> dict:
    """The experts' LoRA weights, named as PEFT names LoRA on transformers' fused experts
    (target_parameters). PEFT wraps the experts once per adapted parameter, each wrapper around
    the one before: the last projection's LoRA is experts.lora_A, the one before it
    experts.base_layer.lora_A."""
    weights = {}
    for name, module in model.named_modules():
        if isinstance(module, experts_nf4_class()):
            adapted = list(module.lora)
            for i, projection in enumerate(adapted):
                prefix = f"{name}." + "base_layer." * (len(adapted) - 1 - i)
                for kind in ("lora_A", "lora_B"):
                    weights[f"{prefix}{kind}.weight"] = module.lora[projection][kind].weight
    return weights


def save_with_expert_lora(model, save_pretrained, folder, *args, **kwargs) -> None:
    """PEFT's save of the adapter, then the experts' LoRA added to its file (PEFT saves only its
    own layers): the adapter loads with PEFT onto transformers' own model, experts included."""
    from safetensors.torch import load_file, save_file

    save_pretrained(folder, *args, **kwargs)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    path = Path(folder) / "adapter_model.safetensors"
    tensors = load_file(path)
    tensors |= {k: v.detach().contiguous() for k, v in expert_lora_weights(model).items()}
    save_file(tensors, path.with_suffix(".tmp"), metadata={"format": "pt"})
    os.replace(path.with_suffix(".tmp"), path)


def load_expert_lora(model, folder: Path) -> None:
    """The experts' LoRA weights from a checkpoint's adapter file (resuming: PEFT loads its own)."""
    import torch
    from safetensors.torch import load_file

    saved = load_file(folder / "adapter_model.safetensors")
    with torch.no_grad():
        for name, weight in expert_lora_weights(model).items():
            weight.copy_(saved[name])


def frozen(module, name: str, tensor, device, dtype) -> None:
    """Put ``tensor`` into ``module`` as its frozen parameter ``name`` (a dotted path). A copy:
    a tensor read from the checkpoint maps the whole file, which would stay in memory with it."""
    import torch

    owner, _, attribute = name.rpartition(".")
    value = tensor.to(device, dtype if tensor.is_floating_point() else None, copy=True)
    parameter = torch.nn.Parameter(value, requires_grad=False)
    module.get_submodule(owner).register_parameter(attribute, parameter)


def load_layer(layer, tensors: dict, gpt_oss: bool, device, dtype) -> tuple[int, int]:
    """One decoder layer from its checkpoint tensors (names relative to the layer): linear layers
    and experts to NF4, the rest in ``dtype`` (norms, router; gpt-oss's attention sinks).
    Returns how many linear layers and expert stacks it quantized."""
    import torch

    ExpertsNF4 = experts_nf4_class()
    linears = 0
    for name, module in list(layer.named_modules()):
        if isinstance(module, torch.nn.Linear):
            weight, bias = tensors.pop(name + ".weight"), tensors.pop(name + ".bias", None)
            layer.set_submodule(name, linear_nf4(weight, bias, device, dtype))
            linears += 1
    experts = getattr(layer.mlp, "experts", None)  # None: a layer with a dense MLP
    if experts is not None:
        if gpt_oss:
            activation = functools.partial(
                gpt_oss_activation, alpha=experts.alpha, limit=experts.limit
            )
            weights = gpt_oss_expert_weights(tensors, device, dtype)
        else:
            activation = functools.partial(qwen3_moe_activation, act_fn=experts.act_fn)
            weights = qwen3_moe_expert_weights(tensors, device, dtype)
        layer.mlp.experts = ExpertsNF4(weights, activation, gpt_oss, device, dtype)
    for name, tensor in tensors.items():
        frozen(layer, name, tensor, device, dtype)
    return linears, 0 if experts is None else 2


def load_model_nf4(base_model: str, dtype_name: str, attn_implementation: str | None, on_gpu: bool):
    """The model with NF4 decoder weights on the device, read from the checkpoint layer by layer:
    the 16-bit model is never in memory, host or GPU. Embeddings, norms, routers and lm_head stay
    in ``dtype_name``, as with bitsandbytes' loader."""

    import torch
    from accelerate import init_empty_weights
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, dtype_name)
    # each process holds its own copy on its own GPU (LOCAL_RANK under torchrun)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if on_gpu else "cpu"
    load = functools.partial(AutoConfig.from_pretrained, base_model)
    config = from_hub(load, "the config", base_model)
    gpt_oss = config.model_type == "gpt_oss"
    if gpt_oss:
        config.quantization_config = None  # the MXFP4 experts are read and dequantized below
    with init_empty_weights():  # the model's parameters on the meta device: nothing allocated
        attention = attention_kernel(attn_implementation, on_gpu)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    files = checkpoint_files(base_model)
    for name in [n for n in files if not n.startswith("model.layers.")]:  # embeddings, lm_head
        frozen(model, name, read_checkpoint([name], files)[name], device, dtype)
    linears = stacks = 0
    layers = model.model.layers  # a progress bar at a terminal: a large model takes minutes
    for i, layer in enumerate(
        tqdm(layers, desc="quantizing layers", disable=not sys.stderr.isatty())
    ):
        prefix = f"model.layers.{i}."
        tensors = read_checkpoint([n for n in files if n.startswith(prefix)], files)
        relative = {n[len(prefix) :]: t for n, t in tensors.items()}
        counts = load_layer(layer, relative, gpt_oss, device, dtype)
        linears, stacks = linears + counts[0], stacks + counts[1]
        del tensors, relative
    if config.tie_word_embeddings:
        model.tie_weights()
    missing = [name for name, p in model.named_parameters() if p.is_meta]
    if missing:
        sys.exit(f"error: the checkpoint of {base_model} holds no {', '.join(missing[:5])}")
    model.to(device)  # the buffers (rotary frequencies) the meta model was built with
    model.is_loaded_in_4bit = True  # as bitsandbytes' loader marks it: peft uses its 4-bit LoRA
    model.config.use_cache = False  # the cache is for generation; training does not use it
    peak = peak_host_gib()
    grouped = "one grouped GEMM" if has_grouped_gemm(device, dtype) else "one expert at a time"
    print_main(
        f"NF4 weights: {linears} linear layers and {stacks} expert stacks ({grouped} per "
        f"projection); peak host memory while loading: {peak:.1f} GiB"
    )
    return model
