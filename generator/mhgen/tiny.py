"""Tiny, randomly initialised models of each family, built offline in a second or two.

``mhgen smoke`` and the end-to-end tests train emitted scripts against these: the same
transformers architecture as the real model (Qwen3, Qwen3-MoE, GptOss, Llama, Mistral), a few
hundred thousand parameters, and a small byte-level BPE tokenizer that carries the chat format's
special tokens. Nothing is downloaded.

This module imports torch, transformers and tokenizers, lazily, inside ``build``: the compiler
itself never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

# Special tokens of each chat format: (bos, eos, pad, others). The tokenizer's eos is the token
# that ends an assistant reply in that format.
FORMAT_TOKENS: dict[str, tuple[str | None, str, str, tuple[str, ...]]] = {
    "chatml": (None, "<|im_end|>", "<|endoftext|>", ("<|im_start|>", "<think>", "</think>")),
    "harmony": (
        "<|startoftext|>",
        "<|return|>",
        "<|endoftext|>",
        ("<|start|>", "<|message|>", "<|end|>", "<|channel|>", "<|call|>", "<|constrain|>"),
    ),
    "llama": ("<s>", "</s>", "<unk>", ("[INST]", "[/INST]")),
    "mistral": ("<s>", "</s>", "<unk>", ("[INST]", "[/INST]")),
    "llama3": (
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|finetune_right_pad_id|>",
        ("<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"),
    ),
}

# Formats whose real tokenizer puts a BOS in front of every encoded text (Llama 2 and Mistral's
# sentencepiece tokenizers, Llama 3's post-processor). The tiny tokenizer does the same, so a
# script that lets the tokenizer add special tokens on top of the template's BOS is caught.
ADDS_BOS = ("llama", "mistral", "llama3")

CORPUS = (
    "The quick brown fox jumps over the lazy dog. user assistant system developer analysis "
    "final commentary Instructions Knowledge cutoff Current date Reasoning medium You are a "
    "helpful assistant. What is 2+2? It is 4. Hello! How can I help you today? Yes, no, maybe. "
    "0123456789 () [] {} <> ,.;:!? '\" - _ = + * / \\ | # @ $ % ^ & ~ ` \n\t"
)


def build(family: str, chat_format: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny model of ``family`` (a families.py name) with a ``chat_format`` tokenizer."""
    import torch
    import transformers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(chat_format)
    tokenizer.save_pretrained(out)
    torch.manual_seed(seed)
    config = _config(family, len(tokenizer), tokenizer)
    model_class = getattr(transformers, config.architectures[0])
    model = model_class(config).to(torch.float32)
    model.save_pretrained(out)
    (out / "mhgen_tiny.json").write_text(
        json.dumps({"family": family, "chat_format": chat_format}) + "\n", encoding="utf-8"
    )
    return out


def build_tokenizer(chat_format: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad, others = FORMAT_TOKENS[chat_format]
    specials = [t for t in (bos, eos, pad) if t] + list(others)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS] * 4, trainer)
    if chat_format in ADDS_BOS:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, model_max_length=4096
    )


# Every weight's input width is a multiple of 64, as in real models: bitsandbytes 0.50.2's CPU
# dequantize_4bit kernel is wrong when a block of 64 spans two rows (a (64, 32) weight comes back
# with 40% error instead of NF4's 9%; its generic torch implementation is right).


def _config(family: str, vocab_size: int, tokenizer):
    import transformers

    common = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "tie_word_embeddings": False,
    }
    if family in ("qwen3", "unknown"):
        config = transformers.Qwen3Config(**common, intermediate_size=128, head_dim=16)
    elif family == "qwen2":
        config = transformers.Qwen2Config(**common, intermediate_size=128)
    elif family in ("qwen3-moe", "qwen3-coder"):
        config = transformers.Qwen3MoeConfig(
            **common,
            intermediate_size=128,
            moe_intermediate_size=64,  # a multiple of 64: see the note above _config
            num_experts=4,
            num_experts_per_tok=2,
            head_dim=16,
        )
    elif family == "gpt-oss":
        config = transformers.GptOssConfig(
            **common,
            intermediate_size=64,  # a multiple of 64: see the note above _config
            num_local_experts=4,
            num_experts_per_tok=2,
            head_dim=16,
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"],
        )
    elif family in ("llama2", "llama3"):
        config = transformers.LlamaConfig(**common, intermediate_size=128, head_dim=16)
    elif family == "mistral":
        config = transformers.MistralConfig(**common, intermediate_size=128, head_dim=16)
    else:
        raise ValueError(f"no tiny model for family {family!r}")
    config.architectures = [type(config).__name__.replace("Config", "ForCausalLM")]
    return config
