"""Stopping and resuming. A run stopped by SIGTERM (a preempted cloud GPU) or Ctrl-C saves a
checkpoint of its last finished optimizer step and exits; --resume then finishes it with the same
data order, optimizer and RNG state: the final adapter equals an uninterrupted run's up to float
noise. The output folder is never reused by accident: not without --resume or --overwrite, not on
other data, not with another step count.

Signals are sent from outside (a real SIGTERM at a random moment) and, to hit one exact boundary,
from inside the process at a chosen trainer event (tests/inject_signal.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import require
from runs import (
    ENV,
    STEPS,
    TESTS,
    assert_same_adapter,
    record,
    run,
    script_for,
    steps_of,
    tiny_model_and_data,
    trained_range,
)

require("trl")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_model_and_data(tmp_path_factory.mktemp("resume"))


def test_sigterm_checkpoint_then_resume_matches_an_uninterrupted_run(tmp_path, setup):
    model, data = setup
    straight = script_for(tmp_path / "a", model, data)
    done = run(straight, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert trained_range(done.stdout) == (1, STEPS)

    script = script_for(tmp_path / "b", model, data)
    out = tmp_path / "b" / "out"
    child = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=script.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    deadline = time.time() + 300
    while not (out / "mhgen_run.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # well inside the run: it takes many seconds on this machine
    child.send_signal(signal.SIGTERM)
    output, _ = child.communicate(timeout=300)
    assert child.returncode == 128 + signal.SIGTERM, output[-2000:]
    (stopped_at,) = steps_of(out)
    assert 0 < stopped_at < STEPS
    assert re.search(
        rf"SIGTERM (during a step|at the end of step {stopped_at}): saving a checkpoint of step "
        rf"{stopped_at} and stopping",
        output,
    ), output[-2000:]
    assert f"stopped at step {stopped_at}; continue with --resume" in output
    assert record(out)["finished"] is False

    resumed = run(script, "--resume", timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from checkpoint-{stopped_at}: step {stopped_at}, epoch " in resumed.stdout
    # the resumed process trained only the steps after the checkpoint, not the run again
    assert trained_range(resumed.stdout) == (stopped_at + 1, STEPS)
    finished = record(out)
    assert finished["finished"] is True and finished["log_history"][-1]["step"] == STEPS
    assert_same_adapter(tmp_path / "a" / "out", out)


GA = 4  # micro-batches per optimizer step in the exact-boundary tests
SHORT = {"max_steps": 6, "gradient_accumulation_steps": GA, "logging_steps": 1, "save_steps": 1000}


@pytest.fixture(scope="module")
def straight_short(tmp_path_factory, setup):
    """An uninterrupted run of the short config, to compare resumed ones with."""
    model, data = setup
    directory = tmp_path_factory.mktemp("straight")
    done = run(script_for(directory, model, data, **SHORT))
    assert done.returncode == 0, done.stderr[-2000:]
    return directory / "out"


def test_a_signal_during_a_step_stops_at_the_next_micro_batch(tmp_path, setup, straight_short):
    model, data = setup
    script = script_for(tmp_path, model, data, **SHORT)
    # on_substep_end follows micro-batches 1..3 of a step: the 8th is inside step 3
    stopped = run(script, inject="on_substep_end:8:1")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "SIGTERM during a step: saving a checkpoint of step 2 and stopping" in stopped.stdout
    assert steps_of(tmp_path / "out") == [2]  # step 3 was not finished first
    resumed = run(script, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert trained_range(resumed.stdout) == (3, 6)
    # dropout is on: equal adapters need the random generators of the step boundary too
    assert_same_adapter(straight_short, tmp_path / "out")


def test_a_signal_in_the_first_step_of_a_fresh_or_resumed_run_stops_it_cleanly(tmp_path, setup):
    """With gradient accumulation the first micro-batch ends before any step has: the run stops
    with 143, saving nothing new (issue 33, 2: it crashed with exit 1)."""
    model, data = setup
    script = script_for(tmp_path, model, data, **SHORT)
    fresh = run(script, inject="on_substep_end:1:1")
    assert fresh.returncode == 128 + signal.SIGTERM, fresh.stderr[-2000:]
    assert "stopped before the first optimizer step; nothing is saved" in fresh.stdout
    assert steps_of(tmp_path / "out") == []
    stopped = run(script, "--resume", inject="on_substep_end:5:1")  # inside step 2
    assert steps_of(tmp_path / "out") == [1], stopped.stdout[-2000:]
    resumed = run(script, "--resume", inject="on_substep_end:1:1")  # the first micro-batch again
    assert resumed.returncode == 128 + signal.SIGTERM, resumed.stderr[-2000:]
    assert "SIGTERM during a step: stopping (step 1 is the newest checkpoint)" in resumed.stdout
    assert steps_of(tmp_path / "out") == [1]
    assert "Traceback" not in fresh.stderr + resumed.stderr


def test_a_signal_during_evaluation_stops_it_and_saves_the_step_it_followed(tmp_path, setup):
    model, data = setup
    held_out = tmp_path / "eval.jsonl"
    held_out.write_text(data.read_text() * 3)  # 48 rows: 6 evaluation batches of 8
    evaluated = {**SHORT, "eval_dataset_path": str(held_out), "eval_steps": 2}
    script = script_for(tmp_path, model, data, **evaluated)
    # the first evaluation follows step 2; the signal lands after its second batch of six
    stopped = run(script, inject="on_prediction_step:2:1")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "SIGTERM during an evaluation: saving a checkpoint of step 2 and stopping" in (
        stopped.stdout
    )
    assert steps_of(tmp_path / "out") == [2]  # no further optimizer step ran first
    state = json.loads((tmp_path / "out" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert not [e for e in state["log_history"] if "eval_loss" in e]  # the evaluation was cut
    resumed = run(script, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert trained_range(resumed.stdout) == (3, 6)
    # the evaluation the signal cut short runs first (issue 33, 7): all three are in the log
    assert "the evaluation of step 2 did not run (a signal stopped it): first it" in resumed.stdout
    log = record(tmp_path / "out")["log_history"]
    assert [e["step"] for e in log if "eval_loss" in e] == [2, 4, 6]


def test_signals_while_a_checkpoint_is_written_do_not_break_it(tmp_path, setup):
    model, data = setup
    script = script_for(tmp_path, model, data, **{**SHORT, "save_steps": 2})
    # two signals (an impatient double Ctrl-C) in the middle of writing checkpoint-2
    stopped = run(script, inject="save:1:2")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    assert (
        "SIGTERM while a checkpoint was written: stopping (step 2 is the newest checkpoint)"
        in stopped.stdout
    )
    assert steps_of(tmp_path / "out") == [2]
    files = {p.name for p in (tmp_path / "out" / "checkpoint-2").iterdir()}
    assert {"adapter_model.safetensors", "optimizer.pt", "trainer_state.json"} <= files
    resumed = run(script, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert trained_range(resumed.stdout) == (3, 6)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, setup):
    """A run stopped at step 2 with its checkpoint, to copy for the refusal tests."""
    model, data = setup
    directory = tmp_path_factory.mktemp("stopped")
    script = script_for(directory, model, data, **SHORT)
    proc = run(script, inject="on_step_end:2:1")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    assert steps_of(directory / "out") == [2]
    return directory


@pytest.fixture
def stopped(tmp_path, stopped_run, setup):
    shutil.copytree(stopped_run / "out", tmp_path / "out")
    return script_for(tmp_path, *setup, **SHORT), tmp_path / "out"


def test_running_again_without_resume_or_overwrite_is_refused(stopped):
    script, out = stopped
    before = sorted(p.name for p in out.rglob("*"))
    proc = run(script)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: out holds an unfinished run (newest: checkpoint-2); pass --resume to continue "
        "it or --overwrite to start over"
    )
    assert sorted(p.name for p in out.rglob("*")) == before


def test_overwrite_starts_over_and_clears_the_old_checkpoints(stopped):
    script, out = stopped
    proc = run(script, "--overwrite", "--max-steps", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert trained_range(proc.stdout) == (1, 1)
    # only the new run's final checkpoint: a later --resume can never pick the old checkpoint-2
    assert steps_of(out) == [1]
    assert record(out)["inputs"]["max_steps"] == 1


def test_an_interrupted_overwrite_leaves_nothing_of_the_old_run_beside_the_new(stopped):
    """Issue 30, 4: the finished run's adapter is never left beside the new run's record."""
    script, out = stopped
    assert run(script, "--resume").returncode == 0  # the old run, finished: adapter and record
    old_adapter = (out / "adapter_model.safetensors").read_bytes()
    (out / "notes.txt").write_text("the user's")
    proc = run(script, "--overwrite", inject="on_step_begin:1:1")  # before any checkpoint
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    aside = out.with_name("out.replaced")
    assert (
        f"the replaced run is in {aside} until this one saves its first checkpoint" in proc.stdout
    )
    assert sorted(p.name for p in out.iterdir()) == ["mhgen_run.json", "notes.txt"]
    assert record(out)["finished"] is False
    assert record(aside)["finished"] is True
    assert (aside / "adapter_model.safetensors").read_bytes() == old_adapter
    # --resume has nothing to take from the old run: it starts at step 1
    proc = run(script, "--resume", "--max-steps", "1")
    assert proc.returncode == 1 and "--resume needs the inputs the run started with" in proc.stderr
    proc = run(script, "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert trained_range(proc.stdout) == (1, 6)
    assert not aside.exists()  # the new run's adapter is whole: the old one is gone
    assert record(out)["finished"] is True and (out / "adapter_model.safetensors").is_file()
    assert (out / "notes.txt").read_text() == "the user's"


def test_resume_on_other_data_is_refused(stopped, tmp_path):
    script, out = stopped
    other = tmp_path / "other.jsonl"
    rows = [
        json.loads(line) for line in Path(record(out)["inputs"]["data"]).read_text().splitlines()
    ]
    other.write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]))  # one row fewer
    proc = run(script, "--resume", "--data", str(other))
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(
        "error: --resume needs the inputs the run started with, and data changed: "
    )
    assert message.endswith("; restore it, or pass --overwrite to start over")
    assert steps_of(out) == [2]


def test_resume_with_another_step_count_is_refused(stopped):
    script, out = stopped
    proc = run(script, "--resume", "--max-steps", "9")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --resume needs the inputs the run started with, and max_steps changed: 6 -> 9; "
        "restore it, or pass --overwrite to start over"
    )


def test_resume_with_nothing_saved_yet_starts_the_run(tmp_path, setup):
    """A spot machine's restart command is always the same: --resume also starts a run that
    was killed before it saved anything, saying so."""
    model, data = setup
    script = script_for(tmp_path, model, data, max_steps=2)
    proc = run(script, "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "out holds no run to resume yet: starting at step 1\n" in proc.stdout
    assert trained_range(proc.stdout) == (1, 2)
    assert record(tmp_path / "out")["finished"] is True


def test_ctrl_c_through_mhgen_run_checkpoints_and_passes_the_exit_code_on(tmp_path, setup):
    model, data = setup
    script_for(tmp_path, model, data)  # writes config.json next to it
    child = subprocess.Popen(
        [sys.executable, "-m", "mhgen", "run", "config.json", "-o", "."],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )  # fmt: skip
    deadline = time.time() + 300
    while not (tmp_path / "out" / "mhgen_run.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    os.killpg(child.pid, signal.SIGINT)  # Ctrl-C reaches mhgen and the script alike
    output, _ = child.communicate(timeout=300)
    assert child.returncode == 128 + signal.SIGINT, output[-2000:]
    assert re.search(r"SIGINT (during a step|at the end of step \d+): saving a checkpoint", output)
    assert len(steps_of(tmp_path / "out")) == 1


@pytest.mark.xdist_group("torchrun")  # one rendezvous port per machine: one torchrun at a time
def test_under_ddp_a_signal_on_one_process_stops_all_at_the_same_step(tmp_path, setup):
    model, data = setup
    script = script_for(tmp_path, model, data, **SHORT, distributed_strategy="ddp", num_processes=2)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    # only rank 1 gets the signal, inside step 2; without agreeing on it, rank 0 would wait in
    # the next gradient all-reduce until the process group's timeout
    proc = subprocess.run(
        [*command, str(TESTS / "inject_signal.py"), str(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env={**ENV, "INJECT_SIGNAL": "on_substep_end:5:1:1"},
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert "SIGTERM during a step: saving a checkpoint of step 1 and stopping" in output
    assert "stopped at step 1; continue with --resume" in output
    assert steps_of(tmp_path / "out") == [1]
    assert "trainer_state.json" in {p.name for p in (tmp_path / "out" / "checkpoint-1").iterdir()}


@pytest.mark.parametrize("batching", ["group_by_length", "padding_free"])
def test_resume_is_exact_with_every_batching(tmp_path, setup, batching):
    """Stopped mid-epoch (after step 3 of 2-step epochs) and resumed: the order of the examples
    is the same as an uninterrupted run's, so is the adapter."""
    model, data = setup
    settings = {**SHORT, "batching": batching}
    straight = run(script_for(tmp_path / "a", model, data, **settings))
    assert straight.returncode == 0, straight.stderr[-2000:]
    script = script_for(tmp_path / "b", model, data, **settings)
    stopped = run(script, inject="on_step_end:3:1")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    resumed = run(script, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert trained_range(resumed.stdout) == (4, 6)
    assert_same_adapter(tmp_path / "a" / "out", tmp_path / "b" / "out")
