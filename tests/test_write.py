"""Writing is safe: hand edits are never overwritten without --force, writes are atomic, and no
base_model makes mhgen write outside its output folder."""

from __future__ import annotations

import os

import pytest

from conftest import MINIMAL, run_cli, write_config
from mhgen import write as write_module
from mhgen.resolve import slug
from mhgen.write import seal, state_of, write


@pytest.fixture
def compiled(tmp_path):
    write_config(tmp_path, MINIMAL, "training-qwen3-8b.json")
    proc = run_cli("compile", "training-qwen3-8b.json", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "out" / "train_qwen3_8b.py"


def test_a_hand_edited_script_is_refused_then_forced(tmp_path, compiled):
    edited = compiled.read_text().replace("LORA_RANK = 16", "LORA_RANK = 64  # my tweak")
    compiled.write_text(edited)
    proc = run_cli("compile", "training-qwen3-8b.json", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == (
        "mhgen: out/train_qwen3_8b.py: refusing to overwrite: it was edited by hand since mhgen "
        "wrote it. Move your changes into the config, or pass --force to replace it.\n"
    )
    assert compiled.read_text() == edited  # nothing lost
    proc = run_cli("compile", "training-qwen3-8b.json", "-o", "out", "--force", cwd=tmp_path)
    assert proc.returncode == 0 and "LORA_RANK = 16  # default\n" in compiled.read_text()
    assert state_of(compiled.read_text()) == "sealed"


def test_a_file_mhgen_did_not_write_is_refused(tmp_path, compiled):
    compiled.write_text("print('my own script')\n")
    proc = run_cli("compile", "training-qwen3-8b.json", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 1 and "it was not written by mhgen" in proc.stderr
    assert compiled.read_text() == "print('my own script')\n"


def test_seal_detects_any_change():
    text = seal("#!/usr/bin/env python3\n# mhgen-body-sha256: " + "0" * 64 + "\nX = 1\n")
    assert state_of(text) == "sealed"
    assert state_of(text.replace("X = 1", "X = 2")) == "edited"
    assert state_of(text + "\n") == "edited"
    assert state_of("X = 1\n") == "foreign"


def test_a_write_that_dies_midway_leaves_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "train_x.py"
    old = seal("# mhgen-body-sha256: " + "0" * 64 + "\nOLD = 1\n")
    target.write_text(old)

    def crash(*args):
        raise KeyboardInterrupt  # the kill arrives after the new text is on disk, before the rename

    monkeypatch.setattr(write_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write(target, seal("# mhgen-body-sha256: " + "0" * 64 + "\nNEW = 2\n"))
    assert target.read_text() == old
    assert [p.name for p in tmp_path.iterdir()] == ["train_x.py"]  # no temporary file left


def test_written_scripts_are_executable(compiled):
    assert os.access(compiled, os.X_OK)


@pytest.mark.parametrize(
    ("base_model", "expected"),
    [
        ("openai/gpt-oss-20b", "gpt_oss_20b"),
        ("unsloth/Qwen3-Coder-30B-A3B-Instruct", "qwen3_coder_30b_a3b_instruct"),
        ("../../etc/passwd", "passwd"),
        ("/abs/models/Llama-3.1-8B/", "llama_3_1_8b"),
        ("C:\\models\\Mistral-7B", "mistral_7b"),
        ("./local/tiny model (v2)", "tiny_model_v2"),
        ("Modèle-7B", "mod_le_7b"),
        ("con", "con"),
        ("x" * 80, "x" * 56),
        ("..", ""),
        ("models/...", ""),
        ("   ", ""),
    ],
)
def test_slug_rule(base_model, expected):
    assert slug(base_model) == expected


def test_no_base_model_writes_outside_the_output_folder(tmp_path):
    for i, model in enumerate(["../../evil", "/etc/cron.d/x", "..\\..\\x", "a/../../b"]):
        write_config(tmp_path, {**MINIMAL, "base_model": model}, f"c{i}.json")
        proc = run_cli("compile", f"c{i}.json", "-o", "out", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        (written,) = proc.stdout.split()
        assert os.path.dirname(written) == "out"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["out"]
