"""Preference tuning (method dpo, issue 29): a row as a pair of conversations, the pair's tokens
with the loss on what each completion generates, byte for byte each family's official template,
and DPO runs of the emitted script that really train (the chosen-minus-rejected margin rises,
measured here with transformers + PEFT), on 4 bits, on a mixture-of-experts model with LoRA on
its experts, from an SFT run's adapter, and through a stop and --resume."""

from __future__ import annotations

import copy
import json

import pytest
from test_chat_formats import CONVERSATIONS, EXPECTED

from conftest import FORMATS, emitted, require, write_rows
from mhgen.runtime.messages import DataError
from mhgen.runtime.preference import PairCollator, row_pair, shared_prompt
from runs import adapter, assert_same_adapter, run, script_for, trained_range

U = {"role": "user", "content": "Name a color."}
A = {"role": "assistant", "content": "Blue."}


# --- the rows: every shape, as (chosen, rejected) whole conversations


def test_every_pair_shape_becomes_two_conversations_that_share_their_prompt():
    system = {"role": "system", "content": "Be brief."}
    no = {"role": "assistant", "content": "No."}
    explicit = {"prompt": [system, U], "chosen": [A], "rejected": [no]}
    assert row_pair(explicit) == ([system, U, A], [system, U, no])
    texts = {"prompt": "Name a color.", "chosen": "Blue.", "rejected": "No."}
    assert row_pair(texts) == ([U, A], [U, no])
    implicit = {"chosen": [U, A], "rejected": [U, no], "score_chosen": 8.0}  # ultrafeedback's
    assert row_pair(implicit) == ([U, A], [U, no])
    orca = {
        "system": "Be brief.",
        "question": "Name a color.",
        "chosen": "Blue.",
        "rejected": "No.",
    }
    assert row_pair(orca) == ([system, U, A], [system, U, no])
    assert row_pair({**orca, "system": ""}) == ([U, A], [U, no])  # orca's empty system: none
    instruction = {
        "instruction": "Name a color.",
        "input": "Warm ones only.",
        "chosen_response": "Red.",
        "rejected_response": "Blue.",
    }
    asked = {"role": "user", "content": "Name a color.\n\nWarm ones only."}
    assert row_pair(instruction) == (
        [asked, {"role": "assistant", "content": "Red."}],
        [asked, {"role": "assistant", "content": "Blue."}],
    )


def test_the_prompt_is_what_the_pair_shares_and_the_replies_differ():
    later = [U, A, {"role": "user", "content": "Another?"}]
    assert shared_prompt([*later, A], [*later, {"role": "assistant", "content": "Red."}]) == 3
    with pytest.raises(DataError, match="chosen and rejected are the same conversation"):
        shared_prompt([U, A], [U, A])
    other = {"role": "user", "content": "Other?"}
    with pytest.raises(DataError, match="first differ at message 0, chosen's is a 'user' message"):
        shared_prompt([U, A], [other, A])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": [U, A]}, "keys messages: expected a preference pair: prompt + chosen + "),
        ({"chosen": "Blue.", "rejected": "No."}, "'chosen' is not a list of messages: without"),
        ({"prompt": "Hi", "chosen": [], "rejected": "No."}, "'chosen' must be a text or a non-"),
        ([U], "expected a JSON object, found list"),
    ],
)
def test_a_row_that_is_no_pair_is_named_in_one_line(row, message):
    with pytest.raises(DataError, match="^" + message.replace("(", r"\(").replace("+", r"\+")):
        row_pair(row)


def test_the_collator_puts_the_chosen_sequences_first_and_counts_only_labelled_tokens():
    examples = [
        {"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "rejected_input_ids": [1, 4],
         "rejected_labels": [-100, 4], "length": 3, "row": 0},
        {"input_ids": [5, 6], "labels": [-100, 6], "rejected_input_ids": [5, 7, 8, 9],
         "rejected_labels": [-100, 7, -100, 9], "length": 4, "row": 1},
    ]  # fmt: skip
    batch = PairCollator(pad_token_id=0)(examples)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0], [5, 6, 0, 0], [1, 4, 0, 0], [5, 7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1] * 4]
    assert batch["completion_mask"].tolist() == [
        [0, 1, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 1],
    ]  # fmt: skip
    with_reference = [{**e, "ref_chosen_logps": -1.5, "ref_rejected_logps": -2.5} for e in examples]
    batch = PairCollator(pad_token_id=0)(with_reference)
    assert batch["ref_chosen_logps"].tolist() == [-1.5, -1.5]
    assert batch["ref_rejected_logps"].tolist() == [-2.5, -2.5]


# --- each family's official template, and the tokens that carry the loss

# what a completion generates in each format, after a several-turn prompt (the official
# template's text of the reply; the text the template writes before it is the prompt's)
TRAINED = {
    "Qwen/Qwen3-8B": "<think>\n\n</think>\n\n{}<|im_end|>",
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": "{}<|im_end|>",
    "openai/gpt-oss-20b": "{}<|return|>",
    "meta-llama/Llama-2-7b-chat-hf": " {} </s>",
    "meta-llama/Llama-3.1-8B-Instruct": "{}<|eot_id|>",
    "mistralai/Mistral-7B-Instruct-v0.3": " {}</s>",
}


@pytest.mark.parametrize("model", sorted(FORMATS))
@pytest.mark.parametrize("case", ["basic", "multi_turn", "long_multi_turn_system"])
def test_both_conversations_of_a_pair_are_the_official_template_s_text(tmp_path, model, case):
    """prompt + chosen and prompt + rejected render as the official template renders each whole
    conversation (the chat format tests' expected strings); only the completion is trained."""
    require("transformers", "tokenizers")
    from mhgen import tiny

    script = emitted(tmp_path, model, method="dpo")
    *prompt, reply = copy.deepcopy(CONVERSATIONS[case])
    rejected = "Nope, not that."
    row = {"prompt": prompt, "chosen": [reply], "rejected": rejected}
    pair = script["to_conversation"](row)
    chosen_text, rejected_text = script["ChatFormat"](
        script["format_conversation"], None, "", ()
    ).texts(pair)
    expected = EXPECTED[model][case]
    assert chosen_text == expected
    head, _, tail = expected.rpartition(reply["content"])  # the reply is the last thing said
    assert rejected_text == head + rejected + tail
    tokenizer = tiny.build_tokenizer(FORMATS[model])
    example = script["tokenize"](tokenizer, **pair)

    def trained(labels):
        return tokenizer.decode([token for token in labels if token != -100])

    assert trained(example["labels"]) == TRAINED[model].format(reply["content"])
    assert trained(example["rejected_labels"]) == TRAINED[model].format(rejected)
    # the same prompt tokens before each completion's first trained token
    starts = [
        next(i for i, label in enumerate(example[side + "labels"]) if label != -100)
        for side in ("", "rejected_")
    ]
    assert starts[0] == starts[1] > 0
    assert example["input_ids"][: starts[0]] == example["rejected_input_ids"][: starts[0]]


def test_a_completion_that_calls_a_tool_trains_on_the_calls_not_on_their_results(tmp_path):
    require("transformers", "tokenizers")
    from mhgen import tiny

    script = emitted(tmp_path, "Qwen/Qwen3-8B", method="dpo")
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    call = {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}
    row = {
        "prompt": "What is 1+2?",
        "chosen": [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "3"},
            {"role": "assistant", "content": "3."},
        ],
        "rejected": "4.",
        "tools": tools,
    }
    tokenizer = tiny.build_tokenizer("chatml")
    example = script["tokenize"](tokenizer, **script["to_conversation"](row))
    trained = tokenizer.decode([t for t in example["labels"] if t != -100])
    assert trained == (  # the call (no thinking block: not the last reply), then the answer
        '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call><|im_end|>'
        "<think>\n\n</think>\n\n3.<|im_end|>"
    )
    assert "<tool_response>\n3\n</tool_response>" in tokenizer.decode(example["input_ids"])


# --- what mhgen says about a DPO config


def test_plan_explain_and_diff_say_the_method_and_count_a_pair_as_two_sequences(tmp_path):
    from conftest import MINIMAL, write_config
    from mhgen import vram
    from mhgen.compare import diff_text
    from mhgen.explain import explain_text
    from mhgen.pipeline import compile_config

    sft = compile_config(write_config(tmp_path, MINIMAL, "sft.json"))
    settings = {**MINIMAL, "method": "dpo", "learning_rate": 5e-6}
    dpo = compile_config(write_config(tmp_path, settings, "dpo.json"))
    shape = vram.shape_for("Qwen/Qwen3-8B")
    pairs = vram.estimate(dict(dpo.plan.values), shape, batch=2)
    sequences = vram.estimate(dict(sft.plan.values), shape, batch=4)
    assert pairs["activations"] == sequences["activations"] > 0
    assert "batch 1 pairs (2 sequences) x 2048 tokens" in vram.report(dict(dpo.plan.values))
    assert (
        "method: dpo (set in the config): preference pairs, chosen over rejected (TRL's "
        "DPOTrainer, loss sigmoid, beta 0.1); reference: the base model (the adapter disabled: "
        "no second copy of it)"
    ) in explain_text(dpo)
    assert "method: sft (default): supervised fine-tuning" in explain_text(sft)
    text, _ = diff_text(sft, dpo)
    assert "dpo: preference pairs, chosen over rejected (TRL's DPOTrainer)" in text


# --- runs of the emitted script

PAIRS = [
    {"prompt": f"Count to {i}.", "chosen": " ".join(map(str, range(i))), "rejected": "No."}
    for i in range(2, 10)
]
DPO = {
    "method": "dpo", "max_steps": 8, "learning_rate": 0.01, "lora_dropout": 0.0, "logging_steps": 1,
    "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_seq_length": 128,
}  # fmt: skip


def tiny_qwen3(root, seed: int = 0):
    """A tiny Qwen3 whose tokenizer carries Qwen3-8B's official chat template."""
    from official_templates import QWEN3_8B_CHAT_TEMPLATE
    from transformers import AutoTokenizer

    from mhgen import tiny

    model = tiny.build("qwen3", "chatml", root / "Qwen3-8B", seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = QWEN3_8B_CHAT_TEMPLATE
    tokenizer.save_pretrained(model)
    return model


def margins(model, tokenize, pairs) -> list[float]:
    """log p(chosen) - log p(rejected) of each pair's completion tokens (its labels)."""
    import torch

    out = []
    for pair in pairs:
        example = tokenize(**pair)
        logps = []
        for side in ("", "rejected_"):
            ids = torch.tensor([example[side + "input_ids"]])
            labels = torch.tensor([example[side + "labels"]])[:, 1:]
            with torch.no_grad():
                logits = model(input_ids=ids).logits[:, :-1].float()
            token_logps = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1))
            logps.append(float((token_logps.squeeze(-1) * (labels != -100)).sum()))
        out.append(logps[0] - logps[1])
    return out


def script_module(path):
    namespace = {"__name__": "emitted"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


def log_of(out_dir) -> list[dict]:
    return json.loads((out_dir / "mhgen_run.json").read_text())["log_history"]


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    data = root / "pairs.jsonl"
    write_rows(data, PAIRS)
    return tiny_qwen3(root), data


def test_a_4bit_dpo_run_raises_the_margin_of_chosen_over_rejected(qwen3, tmp_path):
    require("trl", "peft", "bitsandbytes")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    model, data = qwen3
    script = script_for(tmp_path, model, data, **DPO, load_in_4bit=True)
    done = run(script, "--dry-run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--- first pair's chosen conversation, as the model sees it (" in done.stdout
    assert "--- first pair's rejected conversation, as the model sees it (" in done.stdout
    assert "'<think>\\n\\n</think>\\n\\nNo.<|im_end|>'" in done.stdout  # its trained tokens
    assert "chat template check: 3 pairs match the tokenizer's own" in done.stdout
    done = run(script, "--sample", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert trained_range(done.stdout) == (1, 8)
    sampled = json.loads((tmp_path / "out" / "samples.jsonl").read_text())  # the chosen reply
    assert sampled["reference"] == {"role": "assistant", "content": "0 1"}
    log = [entry for entry in log_of(tmp_path / "out") if "rewards/margins" in entry]
    assert log[0]["rewards/margins"] == 0  # the policy starts as the reference
    # measured here: the base in NF4 (as the script quantizes it), with and without the adapter
    quantized = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )  # fmt: skip
    base = AutoModelForCausalLM.from_pretrained(model, quantization_config=quantized)
    trained = PeftModel.from_pretrained(base, tmp_path / "out").eval()
    tokenizer = AutoTokenizer.from_pretrained(model)
    emitted_script = script_module(script)
    pairs = [emitted_script["to_conversation"](row) for row in PAIRS]

    def tokens(**pair):
        return emitted_script["tokenize"](tokenizer, **pair)

    after = margins(trained, tokens, pairs)
    with trained.disable_adapter():
        before = margins(trained, tokens, pairs)
    assert all(a > b + 0.5 for a, b in zip(after, before, strict=True)), (before, after)


def test_a_dpo_run_stopped_and_resumed_trains_the_same_adapter(qwen3, tmp_path):
    require("trl", "peft")
    model, data = qwen3
    settings = {**DPO, "max_steps": 6, "save_steps": 2, "learning_rate": 0.002}
    straight = script_for(tmp_path / "a", model, data, **settings)
    assert run(straight, "--merge").returncode == 0
    assert (tmp_path / "a" / "out" / "merged" / "config.json").is_file()
    script = script_for(tmp_path / "b", model, data, **settings)
    stopped = run(script, inject="on_step_end:3:1")
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    resumed = run(script, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert trained_range(resumed.stdout) == (4, 6)
    assert_same_adapter(tmp_path / "a" / "out", tmp_path / "b" / "out")


def test_dpo_from_an_sft_run_s_adapter_trains_it_against_itself(qwen3, tmp_path):
    """init_adapter: the SFT adapter is trained further, with its own LoRA settings, and the
    reference is the SFT model (at the first step the policy is the reference: no reward), not
    the base model."""
    require("trl", "peft")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, data = qwen3
    sft_data = tmp_path / "sft.jsonl"
    write_rows(sft_data, [{"prompt": r["prompt"], "completion": r["chosen"]} for r in PAIRS])
    sft = script_for(tmp_path / "sft", model, sft_data, max_steps=8, learning_rate=0.01)
    assert run(sft).returncode == 0
    sft_dir = tmp_path / "sft" / "out"
    settings = {k: v for k, v in DPO.items() if k != "lora_dropout"} | {"max_steps": 3}
    for key in ("lora_rank", "lora_alpha", "lora_dropout"):
        settings[key] = None  # script_for's own: init_adapter's adapter decides them
    script = script_for(tmp_path / "dpo", model, data, **settings, init_adapter=str(sft_dir))
    assert "INIT_ADAPTER = " in script.read_text() and "LORA_RANK" not in script.read_text()
    done = run(script)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "dpo" / "out"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8  # the SFT run's (script_for's)
    first = log_of(out)[0]
    assert first["rewards/chosen"] == 0 and first["rewards/rejected"] == 0
    # ... and its policy is the SFT model, whose log-probabilities differ from the base's
    tokenizer = AutoTokenizer.from_pretrained(model)
    emitted_script = script_module(script)
    pairs = [emitted_script["to_conversation"](row) for row in PAIRS[:2]]

    def tokens(**pair):
        return emitted_script["tokenize"](tokenizer, **pair)

    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    with_sft = PeftModel.from_pretrained(base, sft_dir).eval()
    sft_margins = margins(with_sft, tokens, pairs)
    with with_sft.disable_adapter():
        base_margins = margins(with_sft, tokens, pairs)
    assert all(abs(s - b) > 0.1 for s, b in zip(sft_margins, base_margins, strict=True))
    # and the run trained it further
    before, after = adapter(sft_dir), adapter(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_mixture_of_experts_dpo_run_trains_the_experts_against_the_base(tmp_path):
    """gpt-oss in 4 bits with LoRA on its experts too, the reference's log-probabilities computed
    once before training: the margin rises (measured on transformers' 16-bit model with PEFT's
    LoRA on its fused experts)."""
    require("trl", "peft", "bitsandbytes")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mhgen import tiny

    model = tiny.build("gpt-oss", "harmony", tmp_path / "gpt-oss-20b", seed=3)
    data = tmp_path / "pairs.jsonl"
    write_rows(data, PAIRS)
    settings = {
        **DPO, "load_in_4bit": True, "lora_target_modules": ["q_proj", "v_proj", "gate_up", "down"],
        "max_seq_length": 512,
        "precompute_ref_log_probs": True,
    }  # fmt: skip
    script = script_for(tmp_path, model, data, **settings)
    done = run(script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Computing reference log probs for train dataset" in done.stderr + done.stdout
    adapter = tmp_path / "out"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["target_parameters"] == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    trained = PeftModel.from_pretrained(base, adapter).eval()
    tokenizer = AutoTokenizer.from_pretrained(model)
    emitted_script = script_module(script)
    pairs = [emitted_script["to_conversation"](row) for row in PAIRS]

    def tokens(**pair):
        return emitted_script["tokenize"](tokenizer, **pair)

    after = margins(trained, tokens, pairs)
    with trained.disable_adapter():
        before = margins(trained, tokens, pairs)
    assert all(a > b + 0.5 for a, b in zip(after, before, strict=True)), (before, after)


def test_a_bad_pair_stops_the_run_before_anything_loads_naming_its_line(qwen3, tmp_path):
    model, _ = qwen3
    data = tmp_path / "bad.jsonl"
    write_rows(
        data,
        [
            PAIRS[0],
            {"prompt": "Hi", "chosen": "Same.", "rejected": "Same."},
            {"messages": [U, A]},
            {"prompt": "Hi", "chosen": [{"role": "user", "content": "x"}], "rejected": "No."},
        ],
    )
    script = script_for(tmp_path, model, data, **DPO)
    done = run(script)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{data}:2: chosen and rejected are the same conversation: a pair differs in a reply",
        f"{data}:3: keys messages: expected a preference pair: prompt + chosen + rejected, "
        "chosen + rejected (whole conversations), question + chosen + rejected, or instruction + "
        "chosen_response + rejected_response",
        f"{data}:4: chosen: message 1: role 'user', expected 'assistant' (after an optional "
        "system message, user and assistant alternate)",
    ]


def test_pairs_come_from_a_table_as_from_a_jsonl_file(qwen3, tmp_path):
    """A parquet file of pairs (datasets reads it, a Hub dataset's way): every row null where
    it has no key; the pair shapes mixed."""
    require("datasets")
    from datasets import Dataset

    model, _ = qwen3
    rows = [
        {"question": "Is 91 prime?", "chosen": "No: 7 x 13.", "rejected": "Yes.", "system": ""},
        {"instruction": "Name a color.", "chosen_response": "Blue.", "rejected_response": "7."},
        {"question": "Is 2 prime?", "chosen": "Yes.", "rejected": "No.", "system": "Be brief."},
    ]
    data = tmp_path / "pairs.parquet"
    columns = sorted({key for row in rows for key in row})
    Dataset.from_dict({k: [row.get(k) for row in rows] for k in columns}).to_parquet(str(data))
    script = script_for(tmp_path, model, data, **DPO)
    done = run(script, "--dry-run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        f"data: {data}: 3 rows (2 question + chosen + rejected, 1 instruction + chosen_response "
        "+ rejected_response)"
    ) in done.stdout
    assert "3 examples: 0 longer than MAX_SEQ_LENGTH=128 are truncated" in done.stdout
