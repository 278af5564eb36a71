"""Output bytes depend only on the config's content, its name and mhgen's version (and, for a
model whose files are at hand, on what its config.json says): not on the path, the working
directory, the hash seed, the key order, JSON vs YAML or the clock."""

from __future__ import annotations

import hashlib
import json
import os
import sys

from conftest import ETC, REPO, run_cli, write_config
from mhgen.pipeline import compile_config


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_renders_are_identical():
    config = ETC / "training-qwen3-8b.json"
    assert compile_config(config).text == compile_config(config).text


def test_same_bytes_across_hash_seeds_paths_and_key_order(tmp_path):
    data = json.loads((ETC / "training-gpt-oss-20b.json").read_text())
    a_dir, b_dir = tmp_path / "a", tmp_path / "deeper" / "b"
    a_dir.mkdir()
    b_dir.mkdir(parents=True)
    name = "training-gpt-oss-20b.json"  # the name is the script's: the same in both folders
    write_config(a_dir, data, name)
    reordered = dict(reversed(list(data.items())))
    (b_dir / name).write_text(json.dumps(reordered, indent=4))
    outputs = []
    for directory, seed in ((a_dir, "0"), (b_dir, "4242")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": "Asia/Tokyo" if seed == "0" else "UTC"}
        proc = run_cli("compile", name, "-o", "out", cwd=directory, env=env)
        assert proc.returncode == 0, proc.stderr
        outputs.append(sha(directory / "out" / "train_gpt_oss_20b.py"))
    assert outputs[0] == outputs[1] == sha(REPO / "emitted" / "train_gpt_oss_20b.py")


def test_yaml_and_json_of_the_same_content_give_the_same_script(tmp_path):
    text = (ETC / "training-qwen3-8b.json").read_text()
    data = json.loads(text)
    lines = [f"{k}: {json.dumps(v)}" for k, v in data.items()]
    (tmp_path / "training-qwen3-8b.yaml").write_text("\n".join(lines) + "\n")
    assert (
        compile_config(tmp_path / "training-qwen3-8b.yaml").text
        == compile_config(ETC / "training-qwen3-8b.json").text
    )


def test_no_timestamp_or_path_in_the_output():
    text = (REPO / "emitted" / "train_qwen3_8b.py").read_text()
    assert str(REPO) not in text
    assert "2026" not in text and sys.version.split()[0] not in text
