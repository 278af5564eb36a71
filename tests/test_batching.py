"""How examples form batches. padding_free concatenates a micro-batch's examples into one row, kept
apart only by their position ids: proven here, per family, that the model then computes exactly
what it computes for each example alone (transformers builds a block-diagonal mask from the
position ids when there is no attention mask and no cache), and that gpt-oss's does not (its
padding_free is refused). group_by_length's order is seeded and the same on every run."""

from __future__ import annotations

import pytest

from conftest import require

require("trl")

# family (families.py name) -> (tiny-model family for mhgen.tiny, chat format)
FAMILIES = {
    "qwen3": "chatml",
    "qwen2": "chatml",
    "llama3": "llama3",
    "mistral": "mistral",
    "qwen3-moe": "chatml",
}
LENGTHS = (5, 17, 9, 12)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from mhgen import tiny

    root = tmp_path_factory.mktemp("batching")
    names = {**FAMILIES, "gpt-oss": "harmony"}
    return {family: tiny.build(family, fmt, root / family) for family, fmt in names.items()}


def examples(vocab: int):
    import torch

    generator = torch.Generator().manual_seed(0)
    out = []
    for n in LENGTHS:
        ids = torch.randint(3, vocab, (n,), generator=generator).tolist()
        labels = [-100] * (n // 3) + ids[n // 3 :]  # the prompt part is not trained
        out.append({"input_ids": ids, "labels": labels})
    return out


def per_example_and_packed(model_dir):
    """(logits and loss of each example alone, the same from one padding-free batch)."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.config.use_cache = False  # as the script trains: the mask comes from position ids only
    rows = examples(model.config.vocab_size)
    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collate.torch_call(rows)
    assert batch["input_ids"].shape == (1, sum(LENGTHS)) and "attention_mask" not in batch
    with torch.no_grad():
        packed = model(**batch)
        alone = [
            model(torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])) for r in rows
        ]
    return rows, batch, packed, alone


@pytest.mark.parametrize("family", FAMILIES)
def test_a_padding_free_batch_computes_what_each_example_alone_does(tiny_models, family):
    import torch

    rows, batch, packed, alone = per_example_and_packed(tiny_models[family])
    start = 0
    for row, out in zip(rows, alone, strict=True):
        n = len(row["input_ids"])
        torch.testing.assert_close(
            packed.logits[0, start : start + n], out.logits[0], rtol=1e-5, atol=1e-5
        )
        start += n
    # the loss is the mean over every trained token of the batch, each predicted within its example
    trained = [sum(1 for x in r["labels"][1:] if x != -100) for r in rows]
    expected = sum(out.loss * k for out, k in zip(alone, trained, strict=True)) / sum(trained)
    torch.testing.assert_close(packed.loss, expected, rtol=1e-5, atol=1e-6)


def test_gpt_oss_would_let_concatenated_examples_attend_to_each_other(tiny_models):
    """Why validate.py refuses padding_free for gpt-oss: the packed row computes something else
    (the third example, shorter than the tiny model's sliding window, after two others)."""
    rows, batch, packed, alone = per_example_and_packed(tiny_models["gpt-oss"])
    start = LENGTHS[0] + LENGTHS[1]
    third = packed.logits[0, start : start + LENGTHS[2]]
    assert (third - alone[2].logits[0]).abs().max() > 1e-2


def test_length_grouped_order_is_seeded_complete_and_groups_lengths(tmp_path):
    from conftest import MINIMAL, write_config
    from mhgen.pipeline import compile_config

    config = write_config(tmp_path, {**MINIMAL, "batching": "group_by_length"})
    namespace = {"__name__": "emitted"}
    exec(compile(compile_config(config).text, "emitted", "exec"), namespace)
    sampler_class = namespace["LengthGroupedSampler"]
    import random

    # (not a whole number of 64-batch windows nor of batches: the leftovers must not shift
    # the batch boundaries of what follows them)
    lengths = [random.Random(i).randint(10, 1000) for i in range(2003)]
    sampler = sampler_class(lengths, batch_size=8, seed=42)
    first = list(sampler)
    assert sorted(first) == list(range(2003))  # every example once
    assert list(sampler_class(lengths, 8, 42)) == first  # the same seed: the same order
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(2003))  # a new epoch: anew
    assert list(sampler_class(lengths, 8, 43)) != first

    def padding(order):
        batches = [order[i : i + 8] for i in range(0, len(order), 8)]
        real = sum(lengths[i] for b in batches for i in b)
        return 1 - real / sum(max(lengths[i] for i in b) * len(b) for b in batches)

    shuffled = list(range(2003))
    random.Random(0).shuffle(shuffled)
    assert padding(first) < 0.05 < 0.3 < padding(shuffled)
