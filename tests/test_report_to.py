"""report_to: where the trainer sends its curves, the folder it says, and the dependencies it adds."""

from __future__ import annotations

import importlib.util
import os

import pytest

from conftest import write_config
from mhgen.bundle import bundle
from mhgen.pipeline import compile_config

BASE = {"base_model": "Qwen/Qwen3-8B", "chat_template": "auto", "system_prompt": ""}


def script_of(tmp_path, **settings):
    compiled = compile_config(write_config(tmp_path, {**BASE, **settings}))
    namespace = {"__name__": "emitted"}
    exec(compile(compiled.text, "emitted", "exec"), namespace)
    return compiled, namespace


def not_consulted(name, *args):
    raise AssertionError(f"find_spec({name!r}) called")


def test_default_is_tensorboard_and_trains_without_it(tmp_path, monkeypatch, capsys):
    compiled, script = script_of(tmp_path)
    assert script["REPORT_TO"] == "tensorboard"
    assert '#     "tensorboard>=2.15",' in compiled.text  # uv run installs it
    assert "tensorboard" not in compiled.plan.training_modules  # not required to train
    assert "report_to=report_to(REPORT_TO, output_dir)," in compiled.text  # the recipe's call
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert script["report_to"](script["REPORT_TO"], tmp_path / "out") == "none"
    assert "note: tensorboard is not installed: no training curves" in capsys.readouterr().out


def test_tensorboard_logs_into_the_output_folder_and_says_so(tmp_path, monkeypatch, capsys):
    _, script = script_of(tmp_path)
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "tensorboard" else real(name, *a),
    )
    out = tmp_path / "out"
    assert script["report_to"](script["REPORT_TO"], out) == "tensorboard"
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(out / "runs")
    assert (
        capsys.readouterr().out
        == f"training curves: {out / 'runs'} (tensorboard --logdir {out / 'runs'})\n"
    )


@pytest.mark.parametrize(
    ("reporter", "package"),
    [("wandb", "wandb>=0.18"), ("mlflow", "mlflow>=2.16"), ("trackio", "trackio>=0.2")],
)
def test_a_chosen_reporter_is_a_dependency_the_run_requires(
    tmp_path, monkeypatch, reporter, package, capsys
):
    compiled, script = script_of(tmp_path, report_to=reporter)
    assert script["REPORT_TO"] == reporter
    assert f'#     "{package}",' in compiled.text
    assert (
        reporter in compiled.plan.training_modules
    )  # require() stops the run in one line without it
    assert "report_to=report_to(REPORT_TO, output_dir)," in compiled.text
    # never looked up: the run requires it before it starts, so report_to takes it as chosen
    with monkeypatch.context() as patched:
        patched.setattr(importlib.util, "find_spec", not_consulted)
        assert script["report_to"](script["REPORT_TO"], tmp_path) == reporter
    assert capsys.readouterr().out == f"training curves: sent to {reporter}\n"
    files = bundle(compiled, tmp_path / "bundle")
    requirements = next(f for f in files if f.name == "requirements.txt").read_text()
    assert f"{package}  # not pinned: the tests log to tensorboard or none" in requirements


def test_none_adds_nothing(tmp_path, monkeypatch, capsys):
    compiled, script = script_of(tmp_path, report_to="none")
    assert not any(name in compiled.text for name in ('"tensorboard>=', '"wandb>=', '"mlflow>='))
    assert script["REPORT_TO"] == "none"
    with monkeypatch.context() as patched:  # nothing is looked up
        patched.setattr(importlib.util, "find_spec", not_consulted)
        assert script["report_to"](script["REPORT_TO"], tmp_path) == "none"
    assert capsys.readouterr().out == ""
    files = bundle(compiled, tmp_path / "bundle")
    assert "tensorboard" not in next(f for f in files if f.name == "requirements.txt").read_text()


def test_a_run_writes_its_curves_where_it_says(tmp_path):
    """A real run with the default reporter (tensorboard, installed by the test extra): the event
    file is in OUTPUT_DIR/runs, the folder the run names, and holds the training loss."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from runs import run, script_for, tiny_model_and_data

    model, data = tiny_model_and_data(tmp_path)
    script = script_for(
        tmp_path / "run", model, data, max_steps=2, logging_steps=1, report_to="tensorboard"
    )
    done = run(script)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = tmp_path / "run" / "out" / "runs"
    assert "training curves: out/runs (tensorboard --logdir out/runs)" in done.stdout
    (events,) = runs.rglob("events.out.tfevents.*")
    curves = EventAccumulator(str(events.parent))
    curves.Reload()
    assert [e.step for e in curves.Scalars("train/loss")] == [1, 2]
