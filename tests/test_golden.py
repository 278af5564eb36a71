"""emitted/ is exactly what the compiler makes of etc/, byte for byte, and stays so.

The golden files are the compiler's own output, committed: comparing with them catches an
unintended change of the emitted bytes, never whether those bytes are right. Correctness is
decided by independent oracles: the chat-format strings written from the models' official
templates (test_chat_formats.py), the trained spans and token labels (test_data_and_mask.py), and
the scripts trained for real (test_train_e2e.py, test_resume.py, test_moe_nf4.py).
"""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import EMITTED, ETC, REPO, run_cli
from mhgen.pipeline import compile_config

CONFIGS = sorted(ETC.glob("training-*.json"))


def test_every_named_config_has_its_script():
    names = {compile_config(p).plan.script_name for p in CONFIGS}
    assert names == {p.name for p in EMITTED.glob("train_*.py")}
    assert names == {
        "train_gpt_oss_20b.py",
        "train_qwen3_8b.py",
        "train_qwen3_8b_dpo.py",
        "train_qwen3_coder_30b.py",
    }


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_emitted_matches_byte_for_byte(config):
    compiled = compile_config(config)
    assert (EMITTED / compiled.plan.script_name).read_text(encoding="utf-8") == compiled.text


def test_active_config_compiles_to_the_same_script():
    a = compile_config(ETC / "training.json")
    b = compile_config(ETC / "training-gpt-oss-20b.json")
    assert (a.plan.script_name, a.text) == (b.plan.script_name, b.text)


def test_check_passes_on_the_repository():
    proc = run_cli("check", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "mhgen check: 4 scripts in emitted/ match etc/\n"


@pytest.fixture
def copy_of_repo(tmp_path):
    shutil.copytree(ETC, tmp_path / "etc")
    shutil.copytree(EMITTED, tmp_path / "emitted")
    return tmp_path


def test_check_fails_with_a_diff_when_a_config_changes(copy_of_repo):
    config = copy_of_repo / "etc" / "training-qwen3-8b.json"
    config.write_text(config.read_text().replace('"lora_rank": 16', '"lora_rank": 12'))
    proc = run_cli("check", cwd=copy_of_repo)
    assert proc.returncode == 1
    assert "emitted/train_qwen3_8b.py: stale (compile etc/training-qwen3-8b.json)" in proc.stdout
    assert "-LORA_RANK = 16\n+LORA_RANK = 12\n" in proc.stdout
    assert proc.stdout.endswith(
        "mhgen check: 1 file(s) out of date; to fix: mhgen compile etc/training-qwen3-8b.json\n"
    )


def test_check_reports_missing_and_orphaned_scripts(copy_of_repo):
    (copy_of_repo / "emitted" / "train_qwen3_8b.py").unlink()
    (copy_of_repo / "emitted" / "train_old_model.py").write_text("# old\n")
    proc = run_cli("check", cwd=copy_of_repo)
    assert proc.returncode == 1
    assert "emitted/train_qwen3_8b.py: missing" in proc.stdout
    assert "emitted/train_old_model.py: no config in etc/ compiles to it" in proc.stdout
    assert proc.stdout.endswith(
        "mhgen check: 2 file(s) out of date; to fix: mhgen compile etc/training-qwen3-8b.json; "
        "rm emitted/train_old_model.py\n"
    )


def test_compile_leaves_an_unchanged_file_untouched(copy_of_repo):
    target = copy_of_repo / "emitted" / "train_qwen3_8b.py"
    os.utime(target, (1_000_000_000, 1_000_000_000))
    proc = run_cli("compile", "etc/training-qwen3-8b.json", cwd=copy_of_repo)
    assert proc.returncode == 0
    assert proc.stdout == "emitted/train_qwen3_8b.py\n"
    assert "identical" in proc.stderr
    assert target.stat().st_mtime == 1_000_000_000
