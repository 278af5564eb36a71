"""--merge: the emitted script writes OUTPUT_DIR/merged, the base model with the adapter merged in.

End to end on CPU with tiny models: the merged model, loaded by transformers alone, gives the
logits of the base model with the adapter loaded by PEFT (the independent oracle); a 4-bit run
merges into the 16-bit checkpoint, never into NF4 weights; gpt-oss's MXFP4 experts are copied as
they are; --merge alone on a finished run merges without training; the cases it cannot merge
stop in one line. Adapters of a mixture-of-experts model's experts: test_merge_experts.py.
"""

from __future__ import annotations

import json
import shutil
import signal

import pytest

from conftest import emitted, require, write_config
from mhgen.pipeline import compile_config
from mhgen.vram import DISK_MARGIN
from runs import adapter, run, script_for, tiny_model_and_data

require("trl", "peft", "bitsandbytes")

SETTINGS = {"max_steps": 4, "learning_rate": 0.01, "lora_dropout": 0.0, "logging_steps": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Qwen3 whose tokenizer carries Qwen3-8B's own chat template, and its data."""
    from official_templates import QWEN3_8B_CHAT_TEMPLATE
    from transformers import AutoTokenizer

    model, data = tiny_model_and_data(tmp_path_factory.mktemp("tiny"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = QWEN3_8B_CHAT_TEMPLATE
    tokenizer.save_pretrained(model)
    return model, data


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """A float32 run trained with --merge: (base model, script, output folder, process)."""
    model, data = tiny
    script = script_for(tmp_path_factory.mktemp("run"), model, data, **SETTINGS)
    proc = run(script, "--merge")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model, script, script.parent / "out", proc


def ids():
    import torch

    return torch.tensor([[5, 17, 42, 99, 7, 250, 3, 64, 128, 11]])


def logits(model, input_ids):
    import torch

    with torch.no_grad():
        return model(input_ids).logits


def adapted_logits(base_dir, out_dir, dtype):
    """The base model with the adapter loaded by PEFT (not merged), on ids()."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    return logits(PeftModel.from_pretrained(base, out_dir).eval(), ids())


def merged_tensors(out_dir) -> dict:
    """Every tensor of out_dir/merged, through its index (a file per decoder layer)."""
    from safetensors.torch import load_file

    folder = out_dir / "merged"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    tensors = {}
    for file in sorted(set(index["weight_map"].values())):
        tensors |= load_file(folder / file)
    assert tensors.keys() == index["weight_map"].keys()
    return tensors


def pair_count(out_dir) -> int:
    return sum(key.endswith("lora_A.weight") for key in adapter(out_dir))


def test_the_merged_model_gives_the_adapted_model_s_logits(trained):
    import torch
    from transformers import AutoModelForCausalLM

    model, _, out, proc = trained
    merged = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval()
    assert merged.dtype == torch.float32
    expected = adapted_logits(model, out, torch.float32)
    torch.testing.assert_close(logits(merged, ids()), expected, rtol=1e-5, atol=1e-5)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    assert (logits(base, ids()) - expected).abs().max() > 1e-3  # the adapter changed something
    pairs = pair_count(out)
    assert pairs == 2 * 7  # two layers: attention and MLP projections
    assert f"merged {pairs} LoRA pairs into {model} in float32: out/merged, " in proc.stdout
    assert not (out / ".checkpoint-in-progress").exists()  # nothing half-written is left


def test_the_merged_folder_holds_the_tokenizer_and_its_chat_template(trained):
    from official_templates import QWEN3_8B_CHAT_TEMPLATE
    from transformers import AutoTokenizer

    model, _, out, _ = trained
    merged = AutoTokenizer.from_pretrained(out / "merged")
    base = AutoTokenizer.from_pretrained(model)
    assert merged.chat_template == QWEN3_8B_CHAT_TEMPLATE
    chat = [{"role": "user", "content": "Count to 3."}]
    text = merged.apply_chat_template(chat, tokenize=False)
    assert text == base.apply_chat_template(chat, tokenize=False)
    assert merged.get_vocab() == base.get_vocab()
    config = json.loads((out / "merged" / "config.json").read_text())
    assert config["dtype"] == "float32" and "quantization_config" not in config
    assert (out / "merged" / "generation_config.json").is_file()


def test_merge_alone_on_a_finished_run_merges_without_training(trained, tmp_path):
    _, script, out, _ = trained
    before = merged_tensors(out)
    shutil.rmtree(out / "merged")
    # no data: a merge alone reads none
    proc = run(script, "--merge", "--data", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "effective batch" not in proc.stdout and "adapter saved" not in proc.stdout
    assert "LoRA pairs" in proc.stdout
    after = merged_tensors(out)
    assert after.keys() == before.keys()
    assert all((after[k] == before[k]).all() for k in before)


def test_merge_on_an_unfinished_run_stops_in_one_line(trained, tmp_path):
    _, script, out, _ = trained
    unfinished = tmp_path / "unfinished"
    shutil.copytree(out, unfinished, ignore=shutil.ignore_patterns("merged"))
    record = json.loads((unfinished / "mhgen_run.json").read_text())
    (unfinished / "mhgen_run.json").write_text(json.dumps(record | {"finished": False}))
    proc = run(script, "--merge", "--output-dir", str(unfinished))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert "--resume" in proc.stderr
    assert not (unfinished / "merged").exists()


def test_overwrite_discards_the_replaced_run_s_merged_model(trained, tmp_path):
    _, script, out, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    proc = run(script, "--overwrite", "--max-steps", "1", "--output-dir", str(copy))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (copy / "merged").exists()  # it merged the replaced run's adapter


def test_a_4bit_run_merges_into_the_16bit_weights(tiny, tmp_path):
    """Trained on NF4 weights, merged into the 16-bit checkpoint, in DTYPE: PEFT's own merge of
    the adapter into the float32 base model, rounded to bfloat16."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model, data = tiny
    script = script_for(tmp_path, model, data, **SETTINGS, load_in_4bit=True, dtype="bfloat16")
    proc = run(script, "--merge")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    merged = merged_tensors(out)
    original = load_file(model / "model.safetensors")
    assert merged.keys() == original.keys()
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, out).merge_and_unload().state_dict()
    adapted = 0
    for name, weight in merged.items():
        assert weight.dtype == torch.bfloat16 and weight.shape == original[name].shape, name
        torch.testing.assert_close(weight, reference[name].to(torch.bfloat16), rtol=0, atol=0)
        adapted += not torch.equal(weight, original[name].to(torch.bfloat16))
    assert adapted == pair_count(out) == 14  # every adapted weight moved, and only those
    config = json.loads((out / "merged" / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config
    # the disk check's estimate, from the shapes, is what was written (DISK_MARGIN: the rest)
    estimate = compile_config(tmp_path / "config.json").plan.merged_bytes - DISK_MARGIN
    written = sum(weight.nbytes for weight in merged.values())
    assert abs(estimate - written) < 0.01 * written, (estimate, written)


def test_the_disk_check_counts_the_merged_model(tmp_path, monkeypatch):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    disk_bytes, keep = script["DISK_BYTES"], script["SAVE_TOTAL_LIMIT"]
    free = disk_bytes["merged"] - 1
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(free, 0, free))
    script["check_disk"](tmp_path, disk_bytes, keep, train=False, merge=False)  # nothing to write
    size = f"{disk_bytes['merged'] / 2**30:.2f}"
    with pytest.raises(SystemExit, match=rf"up to {size} GiB \(the merged model of {size} GiB\)"):
        script["check_disk"](tmp_path, disk_bytes, keep, train=False, merge=True)
    with pytest.raises(SystemExit, match=rf"and the adapter; the merged model of {size} GiB\)"):
        script["check_disk"](tmp_path, disk_bytes, keep, train=True, merge=True)


def test_gpt_oss_s_mxfp4_experts_are_copied_as_they_are(tmp_path, capsys):
    """The attention adapter merges into gpt-oss's 16-bit attention; the MXFP4 experts and the
    quantization_config stay. transformers (dequantizing MXFP4 on this CPU) then gives the
    adapted model's logits."""
    import importlib.util

    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from test_moe_nf4 import mxfp4_encode
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mhgen import tiny

    folder = tiny.build("gpt-oss", "harmony", tmp_path / "gpt-oss-20b", seed=1)
    tensors = load_file(folder / "model.safetensors")
    for name in [n for n in tensors if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        blocks, scales = mxfp4_encode(tensors.pop(name).transpose(1, 2))
        tensors[name + "_blocks"], tensors[name + "_scales"] = blocks, scales
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": ["router"]}
    (folder / "config.json").write_text(json.dumps(config))

    out = tmp_path / "out"  # an adapter on attention, as the script saves one
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    targets = ["q_proj", "v_proj"]
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(out)
    AutoTokenizer.from_pretrained(folder).save_pretrained(out)

    settings = {
        "base_model": str(folder), "chat_template": "auto", "system_prompt": "", "dtype": "float32",
    }  # fmt: skip
    compiled = compile_config(write_config(tmp_path, settings))
    (tmp_path / "train.py").write_text(compiled.text)
    spec = importlib.util.spec_from_file_location("emitted_gpt_oss_merge", tmp_path / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.merge_adapter(out, script.BASE_MODEL, script.DTYPE)

    merged = merged_tensors(out)
    assert merged.keys() == tensors.keys()
    for name in [n for n in tensors if n.endswith(("_blocks", "_scales"))]:
        assert merged[name].dtype == torch.uint8 and torch.equal(merged[name], tensors[name])
    kept = json.loads((out / "merged" / "config.json").read_text())["quantization_config"]
    assert kept == config["quantization_config"]
    assert ", the experts kept in mxfp4: " in capsys.readouterr().out
    reloaded = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval()
    expected = adapted_logits(folder, out, torch.float32)
    torch.testing.assert_close(logits(reloaded, ids()), expected, rtol=1e-5, atol=1e-5)
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert (logits(plain, ids()) - expected).abs().max() > 1e-3


def test_merge_and_sample_together_on_a_finished_run_do_both(trained):
    _, script, out, _ = trained
    shutil.rmtree(out / "merged")
    proc = run(script, "--merge", "--sample", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "effective batch" not in proc.stdout and "adapter saved" not in proc.stdout
    assert "LoRA pairs" in proc.stdout and (out / "merged" / "config.json").is_file()
    assert len((out / "samples.jsonl").read_text().split("\n")[:-1]) == 1


def test_a_signal_while_merging_ends_the_script_and_leaves_no_merged_folder(trained):
    """SIGTERM during --merge (after the first of its files) ends the script with 143 at once;
    merged/ never appears half-written (issue 33, 4)."""
    _, script, out, _ = trained
    shutil.rmtree(out / "merged")
    proc = run(script, "--merge", inject="save_file:2:1")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert not (out / "merged").exists() and "Traceback" not in proc.stderr
    assert run(script, "--merge").returncode == 0
    assert (out / "merged" / "model.safetensors.index.json").is_file()
