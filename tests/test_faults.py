"""The failures rented GPU boxes really have, each made to happen to a real training process on
the CPU: SIGKILL at random moments and in the middle of saves (the OOM killer, a spot machine's
end, a power cut), a damaged newest checkpoint, data or tokenizer changed between a run and its
--resume, a NaN loss, CUDA out of memory, a full disk. Faults are injected by
tests/inject_fault.py; the script under test is the emitted one, unchanged."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require
from runs import (
    assert_same_adapter,
    command,
    record,
    run,
    script_for,
    steps_of,
    tiny_model_and_data,
    trained_range,
)

require("trl")
# every step saved, so that kills land in saves often; dropout on, so that an exact resume
# needs the random generators of the checkpoint too
KILLED = {"max_steps": 40, "save_steps": 1, "gradient_accumulation_steps": 1, "logging_steps": 1}
KILLS = 5  # at random moments, after the two at chosen points of a save
SHORT = {"max_steps": 6, "save_steps": 2, "gradient_accumulation_steps": 1, "logging_steps": 1}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_model_and_data(tmp_path_factory.mktemp("faults"))


def assert_whole(out: Path) -> None:
    """Every checkpoint-N folder there is complete: each file it holds loads."""
    import torch
    from safetensors.torch import load_file

    for folder in out.glob("checkpoint-*"):
        state = json.loads((folder / "trainer_state.json").read_text())
        assert state["global_step"] == int(folder.name.split("-")[1])
        load_file(folder / "adapter_model.safetensors")
        torch.load(folder / "optimizer.pt", weights_only=True)
        torch.load(folder / "rng_state.pth", weights_only=False)


def started_training(script: Path, args=(), kill_after=None) -> tuple[int, float]:
    """Run the script; once it starts training (it writes mhgen_run.json then), SIGKILL it after
    ``kill_after`` seconds unless it ended first. Returns its exit code and how long it trained."""
    record = script.parent / "out" / "mhgen_run.json"
    before = record.stat().st_mtime_ns if record.exists() else None
    line, env = command(script, *args)
    child = subprocess.Popen(line, cwd=script.parent, env=env, stdout=subprocess.DEVNULL)
    while child.poll() is None and (not record.exists() or record.stat().st_mtime_ns == before):
        time.sleep(0.01)
    began = time.monotonic()
    try:
        child.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    return child.returncode, time.monotonic() - began


def test_killed_anywhere_resume_finishes_with_the_adapter_of_an_uninterrupted_run(tmp_path, setup):
    model, data = setup
    straight = script_for(tmp_path / "a", model, data, **KILLED)
    code, took = started_training(straight)
    assert code == 0

    script, out = script_for(tmp_path / "b", model, data, **KILLED), tmp_path / "b" / "out"
    # in the middle of writing checkpoint-3 (adapter written, optimizer state not yet)
    killed = run(script, "--resume", fault="kill:save:3")
    assert killed.returncode == -signal.SIGKILL
    assert steps_of(out) == [1, 2]
    assert_whole(out)
    # the next run: checkpoint-3 and -4 fully written; killed just before -4 is renamed in place
    killed = run(script, "--resume", fault="kill:rename:3")  # the record, checkpoint-3, -4
    assert killed.returncode == -signal.SIGKILL
    assert "resuming from checkpoint-2: step 2, epoch " in killed.stdout
    assert steps_of(out) == [2, 3]
    assert_whole(out)
    # and again: checkpoint-4 written, killed in the middle of deleting checkpoint-2
    killed = run(script, "--resume", fault="kill:delete:1")
    assert killed.returncode == -signal.SIGKILL
    assert steps_of(out) == [3, 4]
    assert_whole(out)
    # then at random moments of training (every step is saved: often in a save)
    rng, kills = random.Random(0), []
    while len(kills) < KILLS and not record(out)["finished"]:
        code, _ = started_training(script, ["--resume"], kill_after=rng.uniform(0, 0.2) * took)
        assert code in (0, -signal.SIGKILL)
        assert_whole(out)
        kills += [steps_of(out)[-1]] if code else []
    assert len(kills) >= 3 and kills == sorted(kills)  # each got at least as far as the last
    if not record(out)["finished"]:
        finished = run(script, "--resume")
        assert finished.returncode == 0, finished.stderr[-2000:]
    assert record(out)["finished"] is True
    assert_same_adapter(tmp_path / "a" / "out", out)
    assert not (out / ".checkpoint-in-progress").exists()


@pytest.fixture(scope="module")
def stopped_at_4(tmp_path_factory, setup):
    """A run stopped by SIGTERM at step 4, with checkpoint-2 and checkpoint-4, on data and a
    model of its own (the tests change both and put them back)."""
    root = tmp_path_factory.mktemp("stopped")
    model, data = setup
    shutil.copytree(model, root / model.name)
    shutil.copy(data, root / data.name)
    script = script_for(root, root / model.name, root / data.name, **SHORT)
    stopped = run(script, inject="on_step_end:4:1")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert steps_of(root / "out") == [2, 4]
    return script


@pytest.fixture
def stopped(tmp_path, stopped_at_4):
    """The stopped run's output folder, fresh for each test."""
    out = stopped_at_4.parent / "out"
    saved = tmp_path / "saved"
    shutil.copytree(out, saved)
    yield stopped_at_4, out
    shutil.rmtree(out)
    shutil.copytree(saved, out)


def test_a_damaged_newest_checkpoint_is_skipped_and_left_as_it_is(stopped):
    script, out = stopped
    newest = out / "checkpoint-4"
    (newest / "trainer_state.json").unlink()
    weights = newest / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    resumed = run(script, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (
        "skipping checkpoint-4: its trainer_state.json is missing or cut short (it is left as "
        "it is)\n"
    ) in resumed.stdout
    assert "resuming from checkpoint-2: step 2, epoch " in resumed.stdout
    assert trained_range(resumed.stdout) == (3, 6)
    assert_whole(out)  # step 4 was saved again, whole, in place of the damaged one


def test_a_cut_adapter_alone_is_found_too(stopped):
    script, out = stopped
    weights = out / "checkpoint-4" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    resumed = run(script, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "skipping checkpoint-4: its adapter_model.safetensors is cut short" in resumed.stdout


def test_resume_refuses_changed_data_or_tokenizer_and_takes_them_back(stopped):
    script, out = stopped
    data = Path(record(out)["inputs"]["data"])
    original = data.read_bytes()
    lines = original.splitlines(keepends=True)
    data.write_bytes(b"".join(lines[1:] + lines[:1]))  # the same rows, in another order
    proc = run(script, "--resume")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --resume needs the inputs the run started with, and the content of the training "
        "data changed; restore it, or pass --overwrite to start over"
    )
    data.write_bytes(original)

    from transformers import AutoTokenizer

    model = data.parent / "Qwen3-8B"
    kept = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.add_tokens(["<|new|>"])
    tokenizer.save_pretrained(model)
    proc = run(script, "--resume")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --resume needs the inputs the run started with, and the tokenizer changed (its "
        "vocabulary, special tokens or chat template); restore it, or pass --overwrite to start over"
    )
    for path in model.iterdir():
        if path.is_file() and path.name not in kept:
            path.unlink()
    for name, content in kept.items():
        (model / name).write_bytes(content)

    proc = run(script, "--resume")  # both restored: the run goes on
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert trained_range(proc.stdout) == (5, 6)


def emitted_module(script: Path):
    spec = importlib.util.spec_from_file_location("emitted_faults", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_edit_anywhere_in_a_data_file_changes_its_fingerprint(tmp_path, stopped_at_4):
    """The emitted script hashes a JSONL data file whole, whatever its size, so that --resume
    refuses any edit: its first and last MiB alone once missed one in the middle (issue 33, 5)."""
    script = emitted_module(stopped_at_4)
    path = tmp_path / "data.jsonl"
    rows = [json.dumps({"n": i}) + "\n" for i in range(200_000)]  # 2.3 MB: over 2 MiB
    path.write_text("".join(rows))
    source = script.DataSource(path, "train", None, script.to_conversation)
    whole = script.fingerprint(source)
    assert whole == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()

    def changed(edit) -> bool:
        path.write_text("".join(edit(list(rows))))
        # computed once per run, by size and mtime: a rewrite of the same size in the same clock
        # tick would read as the same file
        script.content_fingerprint.cache_clear()
        return script.fingerprint(source) != whole

    middle = len(rows) // 2
    assert changed(lambda r: r[:-1])  # a row fewer
    assert changed(lambda r: r[:1] + [r[2], r[1]] + r[3:])  # the head reordered
    # a row of the middle replaced by one of the same length: size, head and tail unchanged
    assert changed(lambda r: r[:middle] + [r[middle + 1]] + r[middle + 1 :])
    assert not changed(lambda r: r)  # the same bytes written again: the same fingerprint


def test_a_nan_loss_stops_the_run_at_its_step_keeping_the_last_good_checkpoint(tmp_path, setup):
    model, data = setup
    script = script_for(tmp_path, model, data, **SHORT)
    proc = run(script, fault="nan:5")  # the 5th micro-batch is step 5's (no accumulation)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: the loss is not finite at step 5, before the optimizer applied it: the learning "
        "rate may be too high (learning_rate), float16 may overflow (dtype: bfloat16 does not), "
        "or that step's data is broken; checkpoint-4 is the newest checkpoint (--resume retries "
        'from it; "stop_on_nan": false trains on)'
    )
    assert steps_of(tmp_path / "out") == [2, 4]
    assert_whole(tmp_path / "out")
    import torch
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "out" / "checkpoint-4" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    # the retry the message offers: this time the data is fine, and the run finishes
    resumed = run(script, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert trained_range(resumed.stdout) == (5, 6)


def test_a_gradient_that_is_not_finite_stops_the_run_too(tmp_path, setup):
    """The loss is finite, one gradient is not: the check before the optimizer step (a public
    callback hook, issue 30, 5) stops the run before the weights take it."""
    model, data = setup
    script = script_for(tmp_path, model, data, **SHORT)
    proc = run(script, fault="inf-grad:5")
    assert proc.returncode == 3, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the gradient norm is not finite at step 5, before the "), last
    assert steps_of(tmp_path / "out") == [2, 4]


def test_stop_on_nan_false_trains_on(tmp_path, setup):
    model, data = setup
    script = script_for(tmp_path, model, data, **SHORT, stop_on_nan=False)
    proc = run(script, fault="nan:5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert trained_range(proc.stdout) == (1, 6)


@pytest.mark.parametrize("fault", ["oom:3", "oom-load"])
def test_out_of_memory_is_one_line_with_its_own_exit_code(tmp_path, setup, fault):
    model, data = setup
    script = script_for(tmp_path, model, data, **SHORT)
    proc = run(script, fault=fault)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    if fault == "oom-load":
        assert message.startswith("error: the GPU ran out of memory while loading the model (")
    else:  # the third micro-batch, of 2 rows padded to its longest
        assert message.startswith("error: the GPU ran out of memory on a micro-batch of 2 x ")
    estimate = re.search(r"\(mhgen plan estimated (\d+\.\d) GiB for this config\); ", message)
    assert estimate and float(estimate.group(1)) > 0, message
    assert message.endswith(
        "lower per_device_train_batch_size (raise gradient_accumulation_steps to keep the "
        "effective batch) or max_seq_length, or turn on load_in_4bit; `mhgen plan CONFIG "
        "--gpu-memory GB` shows what fits"
    )


def test_too_little_disk_stops_before_the_model_loads(tmp_path, setup):
    model, data = setup
    script = script_for(tmp_path, model, data, **SHORT)
    proc = run(script, fault="disk:1000000")  # 1 MB free
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"error: {re.escape(str(tmp_path.resolve()))} has 0\.00 GiB free and the run writes up to "
        r"\d+\.\d\d GiB \(2 \+ 1 checkpoints of \d+\.\d\d GiB and the adapter\): free some "
        r"space, lower save_total_limit, or pass another --output-dir",
        message,
    ), message
    assert "effective batch" not in proc.stdout  # said just before the model loads
    assert not (tmp_path / "out").exists()
