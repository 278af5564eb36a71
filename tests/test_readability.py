"""The emitted script reads as if written for its one run: every constant is read by the code it
names (a choice made at compile time is named as one), only what the format and family need is
there, no line reads as machine-wrapped, and two configs' scripts differ by about as much as the
configs do."""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import re

import pytest

from conftest import ETC, MINIMAL, write_config
from mhgen.diagnostics import ConfigError
from mhgen.pipeline import compile_config

# configs that between them take every branch of the templates
VARIANTS = {
    "llama2": {"base_model": "meta-llama/Llama-2-7b-chat-hf"},
    "llama3": {"base_model": "meta-llama/Llama-3.1-8B-Instruct", "load_in_4bit": False},
    "mistral": {"base_model": "mistralai/Mistral-7B-Instruct-v0.3", "dataset_format": "messages"},
    "unknown": {"base_model": "tiiuae/falcon-7b", "assistant_only_loss": False},
    "qwen3-fa2": {"attn_implementation": "flash_attention_2", "use_liger_kernel": True},
    "qwen3-fsdp": {"load_in_4bit": False, "distributed_strategy": "fsdp", "num_processes": 2},
    "qwen3-zero3": {"distributed_strategy": "deepspeed-zero3", "num_processes": 2},
    "qwen3-prompts": {"dataset_format": "prompt_completion", "eval_split": 0.1},
    "qwen3-padded": {"batching": "padded", "selective_checkpointing": True},
    "coder-experts": {
        "base_model": "Qwen/Qwen3-Coder-30B-A3B-Instruct",
        "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up", "down"],
    },
    "gpt-oss-experts": {
        "base_model": "openai/gpt-oss-20b",
        "lora_target_modules": ["q_proj", "down"],
    },
    "gpt-oss-16bit": {"base_model": "openai/gpt-oss-20b", "load_in_4bit": False},
    "qwen3-dpo": {"method": "dpo", "learning_rate": 5e-6, "lora_dropout": 0.0},
    "gpt-oss-dpo-sft-adapter": {
        "base_model": "openai/gpt-oss-20b",
        "method": "dpo",
        "init_adapter": "outputs/gpt_oss_20b",
        "dpo_loss_type": ["sigmoid", "sft"],
        "dpo_loss_weights": [1.0, 0.5],
        "precompute_ref_log_probs": True,
    },
}
SHIPPED = sorted(ETC.glob("training-*.json"))


def texts(tmp_path):
    for config in SHIPPED:
        yield config.stem, compile_config(config).text
    for name, settings in VARIANTS.items():
        path = write_config(tmp_path, {**MINIMAL, **settings}, f"{name}.json")
        yield name, compile_config(path).text


def unread_constants(text: str) -> list[str]:
    tree = ast.parse(text)
    defined = [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.isupper()
    ]
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return [name for name in defined if name not in read]


def warts(text: str, width: int = 100) -> list[str]:
    """Lines that read as machine-wrapped, and words written twice."""
    found = [
        f"loop head wrapped: {m.group()!r}" for m in re.finditer(r"for \(\n\s+.+\n\s+\) in", text)
    ]
    found += [
        f"word twice: {m.group()!r}" for m in re.finditer(r"\b([A-Za-z]{3,}) \1(?![A-Za-z])", text)
    ]
    lines = text.splitlines()
    for a, b in zip(lines, lines[1:], strict=False):
        pa, pb = (re.match(r"^(\s*(?:# )?)(\S.*)$", line) for line in (a, b))
        if not (pa and pb) or pa.group(1) != pb.group(1):
            continue
        end = pb.group(2).removesuffix('"""')
        # the short last line of a sentence whose first word fitted on the line before
        if (
            end.strip()
            and len(end) < 30
            and end.endswith(".")
            and not re.match(r"[\w-]+: ", end)
            and len(a) + 1 + len(end.split()[0]) <= width
            and not a.rstrip().endswith(".")  # a sentence ended: a new one may start a line
            and (a.lstrip().startswith("#") or not a.rstrip().endswith((")", ",", ":", "(", "[")))
        ):
            found.append(f"wrapped early: {a.strip()!r} / {b.strip()!r}")
    return found


def test_every_constant_is_read_by_the_code(tmp_path):
    unread = {name: unread_constants(text) for name, text in texts(tmp_path)}
    assert {name: found for name, found in unread.items() if found} == {}


def test_a_choice_made_at_compile_time_is_named_as_one(tmp_path):
    for name, text in texts(tmp_path):
        recipe = parts(text)[0]
        line = recipe.split("\n# compiled in: ")[1].split("\n\n")[0].replace("\n# ", " ")
        keys = [item.split(":")[0] for item in line.split(", ")]
        if "dpo" in name:  # a DPO script is written for its method too; SFT's need not say it
            assert keys.pop(0) == "method", name
        assert keys == [
            "chat_template",
            "dataset_format",
            "load_in_4bit",
            "batching",
            "distributed_strategy",
        ], name
        for key in ("CHAT_FORMAT", "DATASET_FORMAT", "LOAD_IN_4BIT", "BATCHING", "NUM_PROCESSES"):
            assert f"\n{key} = " not in text, (name, key)


def test_no_line_reads_as_machine_wrapped(tmp_path):
    found = {name: warts(text) for name, text in texts(tmp_path)}
    assert {name: w for name, w in found.items() if w} == {}


def test_the_wart_finder_finds_warts():
    assert warts("    for (\n        message\n    ) in messages:  # a comment\n")
    assert warts('"""Qwen\'s name the reasoning reasoning_content."""\n')
    assert warts(
        "    # Read into CPU memory first: the\n    # model.\n"  # fits "model." on the line above
    )
    assert not warts("    # a sentence that ends here.\n    # Another one.\n")


def parts(text: str) -> tuple[str, str, str, str]:
    """(recipe, runtime, 4-bit experts block, preference pairs block) of a script, each without
    its boundary comment; "" for a block it does not have. Fails where a boundary is missing or
    out of place."""
    recipe, _, rest = text.partition("\n# ==== mhgen runtime ")
    assert rest, "no runtime boundary"
    core_head, _, core = rest.partition("\n")
    assert core_head.endswith("the same in every script this version writes ====")
    core, *more = core.split("\n# ==== mhgen runtime ")
    blocks = {}
    for block in more:
        head, _, body = block.partition("\n")
        assert head.endswith(" ====")
        blocks[head.split(", ", 1)[1].split(":")[0]] = body
    assert list(blocks) in (
        [],
        ["4-bit experts"],
        ["preference pairs"],
        ["preference pairs", "4-bit experts"],
    )
    return recipe, core, blocks.get("4-bit experts", ""), blocks.get("preference pairs", "")


def block_body(block: str) -> str:
    """A runtime block without its sha256 line, and without the script's last lines (the call
    of main) where it is the last block."""
    sha_line, _, body = block.partition("\n")
    assert sha_line.startswith("# runtime sha256: ")
    return body.split('\n\n\nif __name__ == "__main__":')[0].strip("\n")


def test_the_recipe_comes_first_and_main_is_called_last(tmp_path):
    for name, text in texts(tmp_path):
        recipe, core, *_ = parts(text)
        assert "\ndef main() -> None:" in recipe, name
        assert "def main(" not in core, name
        assert text.endswith('\n\n\nif __name__ == "__main__":\n    main()\n'), name


def test_each_block_names_the_sha256_of_its_own_text(tmp_path):
    for name, text in texts(tmp_path):
        for block in parts(text)[1:]:
            if not block:
                continue
            sha_line, _, body = block.partition("\n")
            body = body.split('\n\n\nif __name__ == "__main__":')[0].strip("\n") + "\n"
            assert sha_line == "# runtime sha256: " + hashlib.sha256(body.encode()).hexdigest(), (
                name
            )


# what flips between variants of a config: each changes the recipe only
FLIPS = {
    "dataset_format": "sharegpt",
    "report_to": "none",
    "batching": "padded",
    "load_in_4bit": False,
    "distributed_strategy": "fsdp",
    "eval_split": 0.1,
    "eval_dataset_path": "data/eval.jsonl",
}


def test_the_runtime_is_the_same_bytes_in_every_script(tmp_path):
    """The runtime block is identical in every shipped script and every variant of them; the
    4-bit experts block is identical in every script that has one (gpt-oss and Qwen3-MoE)."""
    cores, experts = set(), set()
    configs = [json.loads(path.read_text()) for path in SHIPPED]
    for number, config in enumerate(configs):
        variants = [{}, *({key: value} for key, value in FLIPS.items())]
        for k, flip in enumerate(variants):
            settings = {k: v for k, v in config.items() if k != "$schema"} | flip
            path = write_config(tmp_path, settings, f"v{number}-{k}.json")
            try:
                _, core, moe, _ = parts(compile_config(path).text)
            except ConfigError:  # fsdp with 4-bit experts: refused
                continue
            cores.add(block_body(core))
            if moe:
                experts.add(block_body(moe))
    for _name, text in texts(tmp_path):  # every format and family, experts LoRA among them
        _, core, moe, _ = parts(text)
        cores.add(block_body(core))
        if moe:
            experts.add(block_body(moe))
    assert len(cores) == 1
    assert len(experts) == 1


# lines above the runtime boundary, per shipped config (6 more since the docstring shows the
# two-machine command and the data cache's lock imports threading and socket)
RECIPE_LINES = {"qwen3-8b": 406, "qwen3-8b-dpo": 430, "qwen3-coder-30b": 450, "gpt-oss-20b": 503}


@pytest.mark.parametrize("name", sorted(RECIPE_LINES))
def test_the_recipe_is_short(name):
    recipe = parts(compile_config(ETC / f"training-{name}.json").text)[0]
    assert len(recipe.splitlines()) <= RECIPE_LINES[name]


def test_only_what_the_format_needs(tmp_path):
    """Each recipe holds its own chat format's code and no other's."""
    by_name = {name: parts(text)[0] for name, text in texts(tmp_path)}
    coder = by_name["training-qwen3-coder-30b"]
    qwen3 = by_name["training-qwen3-8b"]
    oss = by_name["training-gpt-oss-20b"]
    normalise = "with_thinking("  # data's reasoning, for a format that has it
    assert normalise in qwen3 and normalise in oss and normalise not in coder
    assert '"reasoning_content": m["thinking"]' in qwen3  # Qwen3's template reads it so
    # a tool call's arguments as an object, for the templates that read them so (not Qwen3's)
    assert "call_arguments(c)" in coder and "call_arguments(c)" in oss
    assert "call_arguments(c)" not in qwen3
    assert "def typescript_type" in oss and "typescript_type" not in coder + qwen3
    assert "def xml_tools" in coder and "xml_tools" not in oss + qwen3
    assert "def split_thinking" in qwen3 and "split_thinking" not in coder


def changed_lines(a: str, b: str) -> list[str]:
    """The lines of ``a`` that a diff replaces or removes, and the lines of ``b`` added beyond
    those (a replaced line counts once), without the hash lines (the seal, the config's sha256
    in the header and constants), which always differ."""
    changed = []
    lines_a, lines_b = a.splitlines(), b.splitlines()
    matcher = difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        old = [line for line in lines_a[i1:i2] if not re.search(r"[0-9a-f]{64}", line)]
        new = [line for line in lines_b[j1:j2] if not re.search(r"[0-9a-f]{64}", line)]
        changed += old + new[len(old) :]
    return changed


def compiled(tmp_path, settings: dict, name: str) -> str:
    base = json.loads((ETC / "training-qwen3-8b.json").read_text())
    base = {k: v for k, v in base.items() if k != "$schema"}
    tmp_path.mkdir()
    return compile_config(write_config(tmp_path, base | settings, name)).text


def test_one_value_changes_one_line(tmp_path):
    a = compiled(tmp_path / "a", {}, "training-a.json")
    b = compiled(tmp_path / "b", {"learning_rate": 1e-4}, "training-a.json")
    assert changed_lines(a, b) == ["LEARNING_RATE = 0.0002"]


def test_another_file_name_changes_only_the_names(tmp_path):
    a = compiled(tmp_path / "a", {}, "training-a.json")
    b = compiled(tmp_path / "b", {}, "training-b.json")
    changed = changed_lines(a, b)  # the header's line, the output folder and three commands
    assert 0 < len(changed) <= 5, changed


@pytest.mark.parametrize(
    "flip",
    [
        {"dataset_format": "sharegpt"},
        {"report_to": "none"},
        {"batching": "padded"},
        {"load_in_4bit": False},
    ],
    ids=lambda flip: next(iter(flip)),
)
def test_a_flipped_choice_changes_a_few_recipe_lines(tmp_path, flip):
    a = compiled(tmp_path / "a", {}, "training-a.json")
    b = compiled(tmp_path / "b", flip, "training-a.json")
    changed = changed_lines(a, b)
    assert 0 < len(changed) <= 15, changed
    assert parts(a)[1:] == parts(b)[1:]  # so every changed line is in the recipe


def test_qwen3_and_its_moe_sibling_differ_in_the_recipe_and_the_moe_block_only():
    a, b = (
        compile_config(ETC / f"training-{n}.json").text for n in ("qwen3-8b", "qwen3-coder-30b")
    )
    (recipe_a, core_a, moe_a, _), (recipe_b, core_b, moe_b, _) = parts(a), parts(b)
    assert block_body(core_a) == block_body(core_b)
    assert not moe_a and moe_b and recipe_a != recipe_b


def test_a_dpo_script_is_its_sft_sibling_with_other_data_and_trainer_parts():
    """method dpo changes the recipe's data and trainer parts and adds the preference block;
    the runtime is the same bytes."""
    sft, dpo = (
        compile_config(ETC / f"training-{n}.json").text for n in ("qwen3-8b", "qwen3-8b-dpo")
    )
    (recipe_a, core_a, moe_a, pairs_a), (recipe_b, core_b, moe_b, pairs_b) = parts(sft), parts(dpo)
    assert block_body(core_a) == block_body(core_b)
    assert not moe_a and not moe_b and not pairs_a and pairs_b
    assert "def row_pair(" in pairs_b and "class PairCollator" in pairs_b
    changed = changed_lines(recipe_a, recipe_b)
    assert 20 < len(changed) < 90, len(changed)
    assert "from trl import DPOConfig" in recipe_b and "SFTConfig" not in recipe_b
