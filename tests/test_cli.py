"""The command line: exit codes (0 ok, 1 invalid or stale, 2 usage), use/new/diff/schema/run."""

from __future__ import annotations

import json
import re
import shutil
import sys
from types import SimpleNamespace

import pytest

from conftest import ETC, MINIMAL, REPO, run_cli, write_config


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copytree(ETC, tmp_path / "etc")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_compile_prints_the_path_and_writes_the_script(project, cli):
    code, out, err = cli("compile", "etc/training.json")
    assert (code, out, err) == (0, "emitted/train_gpt_oss_20b.py\n", "")
    assert (project / "emitted" / "train_gpt_oss_20b.py").is_file()


def test_compile_many_and_yaml_to_another_folder(project, cli):
    (project / "etc" / "training.yaml").write_text(
        "base_model: Qwen/Qwen3-8B\nchat_template: auto\nsystem_prompt: ''\n"
    )
    code, out, err = cli(
        "compile", "etc/training-qwen3-8b.json", "etc/training-qwen3-coder-30b.json", "-o", "o"
    )
    assert (code, err) == (0, "")
    assert out.splitlines() == ["o/train_qwen3_8b.py", "o/train_qwen3_coder_30b.py"]


def test_an_output_folder_that_is_a_file_is_one_line(project, cli):
    (project / "taken").write_text("a file of the user's\n")
    code, out, err = cli("compile", "etc/training-qwen3-8b.json", "-o", "taken")
    assert (code, out) == (2, "")
    assert err == "mhgen: -o taken: a file, not a folder (-o names the folder the scripts go in)\n"
    assert (project / "taken").read_text() == "a file of the user's\n"


def test_scripts_are_named_after_their_configs_not_their_models(project, cli):
    """Two configs of one model get two scripts and two output folders."""
    assert cli("new", "my-model", "--from", "qwen3-8b")[0] == 0
    mine = project / "etc" / "training-my-model.json"
    mine.write_text(mine.read_text().replace('"lora_rank": 16', '"lora_rank": 12'))
    code, out, err = cli("compile", "etc/training-qwen3-8b.json", str(mine))
    assert (code, err) == (0, "")
    assert out.splitlines() == ["emitted/train_qwen3_8b.py", "emitted/train_my_model.py"]
    script = (project / "emitted" / "train_my_model.py").read_text()
    assert 'OUTPUT_DIR = "outputs/my_model"  # derived' in script
    header = " ".join(line[2:] for line in script.splitlines() if line.startswith("# "))
    assert "from the config my_model (canonical sha256 " in header
    assert "for the model Qwen/Qwen3-8B, whose family, qwen3, comes from its name." in header
    assert cli("compile", *map(str, sorted((project / "etc").glob("training-*.json"))))[0] == 0
    assert cli("check")[:2] == (0, "mhgen check: 5 scripts in emitted/ match etc/\n")


def test_an_edited_active_config_gets_a_script_of_its_own(project, cli):
    active = project / "etc" / "training.json"
    assert cli("compile", str(active))[1] == "emitted/train_gpt_oss_20b.py\n"  # a copy: its name
    active.write_text(active.read_text().replace('"lora_rank": 8', '"lora_rank": 12'))
    code, out, err = cli("compile", "etc/training.json")
    assert (code, out) == (0, "emitted/train_training.py\n")
    assert err.startswith("mhgen: note: etc/training.json matches no training-*.json beside it")
    assert cli("compile", *map(str, sorted((project / "etc").glob("training-*.json"))))[0] == 0
    assert cli("check")[:2] == (0, "mhgen check: 5 scripts in emitted/ match etc/\n")
    # discarding the edit takes its script along, so that check stays green
    code, out, _ = cli("use", "qwen3-8b", "--force")
    assert code == 0 and "removed emitted/train_training.py" in out
    assert cli("check")[:2] == (0, "mhgen check: 4 scripts in emitted/ match etc/\n")


def test_two_configs_with_one_name_and_different_settings_are_refused(project, cli):
    (project / "other").mkdir()
    shutil.copy(project / "etc" / "training-qwen3-8b.json", project / "other")
    other = project / "other" / "training-qwen3-8b.json"
    other.write_text(other.read_text().replace('"lora_rank": 16', '"lora_rank": 12'))
    code, _, err = cli("compile", "etc/training-qwen3-8b.json", str(other), "-o", "o")
    assert code == 2
    assert "both compile to train_qwen3_8b.py with different settings" in err
    assert not (project / "o").exists()


def test_validate_exit_codes(project, cli):
    assert cli("validate", "etc/training-qwen3-8b.json")[:2] == (
        0,
        "etc/training-qwen3-8b.json: ok\n",
    )
    write_config(project, {**MINIMAL, "lora_rank": 64, "lora_alpha": 16}, "w.json")
    code, out, err = cli("validate", "w.json")
    assert code == 0 and out == "w.json: ok (2 warnings)\n"
    assert err.splitlines() == [
        "w.json:5:3: $.lora_rank: warning: 64 is outside the recommended 8-16 (higher = more capacity, slower)",
        "w.json:6:3: $.lora_alpha: warning: 16 with lora_rank 64: alpha is typically 2x rank (128)",
    ]
    write_config(project, {**MINIMAL, "lora_rank": 0}, "bad.json")
    assert cli("validate", "bad.json")[0] == 1


def test_usage_errors_exit_2(project):
    assert run_cli("compile", "missing.json", cwd=project).returncode == 2
    assert run_cli("frobnicate", cwd=project).returncode == 2
    assert run_cli("compile", cwd=project).returncode == 2
    proc = run_cli(
        "compile", "etc/training.json", "etc/training-qwen3-8b.json", "--run", cwd=project
    )
    assert proc.returncode == 2 and "--run takes exactly one config" in proc.stderr


def test_warnings_for_the_seed_advice(project, cli):
    write_config(project, {**MINIMAL, "learning_rate": 0.001, "num_train_epochs": 5}, "w.json")
    code, out, err = cli("validate", "w.json")
    assert code == 0
    assert "$.learning_rate: warning: 0.001 is outside the usual 0.0001-0.0002 for LoRA" in err
    assert "$.num_train_epochs: warning: 5 epochs; 2-3 are recommended" in err


def test_wrong_format_for_family_warns(project, cli):
    write_config(
        project,
        {**MINIMAL, "base_model": "openai/gpt-oss-20b", "chat_template": "chatml"},
        "w.json",
    )
    _, _, err = cli("validate", "w.json")
    assert (
        "$.chat_template: warning: 'chatml' for a gpt-oss model, whose own template is 'harmony'"
        in err
    )


@pytest.mark.parametrize("targets", [["q_proj", "gate_up", "down"], "all-linear"])
def test_lora_on_4bit_experts_is_emitted_with_peft_s_names_for_fused_experts(project, cli, targets):
    config = {**MINIMAL, "base_model": "openai/gpt-oss-20b", "chat_template": "auto"}
    write_config(project, {**config, "lora_target_modules": targets}, "w.json")
    code, _, err = cli("compile", "w.json", "-o", "out")
    assert (code, err) == (0, "")
    script = (project / "out" / "train_w.py").read_text()
    recipe = script.split("\n# ==== mhgen runtime ")[0]
    assert 'if m not in ("gate_up", "down")],' in recipe  # PEFT's LoRA: the linear layers
    assert 'add_expert_lora(model, ("gate_up", "down"), LORA_RANK, LORA_ALPHA)' in recipe
    # the runtime names the experts' LoRA as PEFT names LoRA on fused experts (target_parameters)
    emitted = {"__name__": "emitted"}
    exec(compile(script, "train_w.py", "exec"), emitted)
    peft_model = SimpleNamespace(
        modules=list, peft_config={"default": SimpleNamespace()}, save_pretrained=None
    )
    emitted["add_expert_lora"](peft_model, ("gate_up", "down"), 8, 16)
    assert peft_model.peft_config["default"].target_parameters == [
        "mlp.experts.gate_up_proj",
        "mlp.experts.down_proj",
    ]
    assert "ddp_find_unused_parameters=False," in recipe  # every expert's LoRA is in every step
    write_config(project, config, "attention.json")  # the default: attention only
    assert cli("compile", "attention.json", "-o", "out2")[2] == ""
    script = (project / "out2" / "train_attention.py").read_text()
    recipe = script.split("\n# ==== mhgen runtime ")[0]
    assert "def load_model(" in recipe and "add_expert_lora(" not in recipe
    assert "target_modules=LORA_TARGET_MODULES," in recipe


def test_schema_prints_the_schema(cli):
    code, out, _ = cli("schema")
    assert code == 0
    assert json.loads(out) == json.loads((REPO / "schema" / "training.schema.json").read_text())


def test_diff_shows_what_changes_then_settings_then_script(project, cli):
    code, out, _ = cli("diff", "etc/training-qwen3-8b.json", "etc/training-gpt-oss-20b.json")
    assert code == 1  # as diff(1): they differ
    what, settings, script = out.split("\n\n", 2)
    assert what.splitlines() == [
        "what changes:",
        "  family: qwen3 -> gpt-oss (mixture of experts)",
        "  chat format: chatml with Qwen3's <think> block -> harmony (gpt-oss: analysis and final "
        "channels)",
        "  loader: transformers + bitsandbytes: linear layers in NF4 -> the script's own, layer by "
        "layer: linear layers and experts in NF4",
        f"  GPU memory: {plan_gib(project, 'qwen3-8b')} GiB peak (mhgen plan) -> "
        f"{plan_gib(project, 'gpt-oss-20b')} GiB peak (mhgen plan), 3.6 GiB of host RAM to load",
        "  script: train_qwen3_8b.py -> train_gpt_oss_20b.py",
    ]
    settings = settings.splitlines()
    assert settings[0] == "settings:"
    assert '  base_model: "Qwen/Qwen3-8B" -> "openai/gpt-oss-20b"' in settings
    assert '  chat_template: "chatml" -> "harmony"' in settings
    assert '  reasoning_effort: (not set) -> "medium" (default)' in settings  # harmony's only
    assert '  output_dir: "outputs/qwen3_8b" (derived) -> "outputs/gpt_oss_20b" (derived)' in (
        settings
    )
    notes = [line.split(":")[0] for line in settings if line.startswith("  notes.")]
    assert notes == ["  notes.best_for", "  notes.format", "  notes.hardware", "  notes.model"]
    assert script.startswith("recipes (lines holding a sha256 left out):\n--- train_qwen3_8b.py")
    assert "\n-LORA_RANK = 16\n" in script and "\n+LORA_RANK = 8\n" in script
    # the runtime appended to the recipes is compared block by block, not diffed line by line
    from mhgen import __version__, appendix

    assert script.endswith(
        f"runtime: identical (mhgen {__version__}, sha256 {appendix.core().sha256[:16]})\n"
        f"4-bit experts block: only in b (sha256 {appendix.experts().sha256[:16]})\n"
    )
    assert "def check_rows(" not in script
    assert not re.search("[0-9a-f]{64}", out)


def plan_gib(project, name: str) -> float:
    from mhgen.pipeline import compile_config

    return compile_config(project / "etc" / f"training-{name}.json").plan.peak_gib


def test_diff_of_one_config_with_itself_says_so_and_exits_0(project, cli):
    code, out, _ = cli("diff", "etc/training-qwen3-8b.json", "etc/training-qwen3-8b.json")
    assert (code, out) == (0, "the configs compile to the same script\n")


def test_diff_with_a_broken_config_exits_2(project, cli):
    (project / "bad.json").write_text('{"base_model": 3}\n')
    code, out, err = cli("diff", "etc/training-qwen3-8b.json", "bad.json")
    assert code == 2 and out == ""
    assert err.startswith("bad.json:1:")


def test_use_switches_the_active_config(project, cli):
    code, out, _ = cli("use", "qwen3-8b")
    assert code == 0
    active = (project / "etc" / "training.json").read_bytes()
    assert active == (project / "etc" / "training-qwen3-8b.json").read_bytes()


def test_use_refuses_to_discard_an_unsaved_active_config(project, cli):
    active = project / "etc" / "training.json"
    active.write_text(active.read_text().replace('"lora_rank": 8', '"lora_rank": 9'))
    before = active.read_bytes()
    code, _, err = cli("use", "qwen3-8b")
    assert code == 1 and "differs from every etc/training-*.json" in err
    assert active.read_bytes() == before
    assert cli("use", "qwen3-8b", "--force")[0] == 0


def test_use_unknown_name_lists_the_choices(project, cli):
    code, _, err = cli("use", "llama-9000")
    assert code == 2
    assert "available: gpt-oss-20b, qwen3-8b, qwen3-8b-dpo, qwen3-coder-30b" in err


def test_new_copies_a_config_and_never_overwrites(project, cli):
    code, out, _ = cli("new", "my-model", "--from", "qwen3-8b")
    assert (code, out) == (0, "etc/training-my-model.json\n")
    new = project / "etc" / "training-my-model.json"
    assert new.read_bytes() == (project / "etc" / "training-qwen3-8b.json").read_bytes()
    code, _, err = cli("new", "my-model", "--from", "qwen3-8b")
    assert (code, err) == (
        1,
        "mhgen: etc/training-my-model.json already exists; choose another name, or edit that file\n",
    )
    assert cli("new", "../escape", "--from", "qwen3-8b")[0] == 2
    assert not (project / "escape.json").exists()


def test_compile_run_passes_arguments_and_exit_code(project, tmp_path):
    write_config(project, {**MINIMAL, "dataset_path": "nowhere.jsonl"}, "c.json")
    proc = run_cli("compile", "c.json", "--run", "--", "--data", "missing-data.jsonl", cwd=project)
    assert proc.returncode == 1
    assert "error: missing-data.jsonl: no such data file" in proc.stderr
    proc = run_cli("run", "c.json", "--", "--help", cwd=project)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout
    # the script's own options pass on without "--" too (issue 30, 6): here its --data
    proc = run_cli("run", "c.json", "--data", "other-missing.jsonl", cwd=project)
    assert proc.returncode == 1 and "error: other-missing.jsonl: no such data file" in proc.stderr
    proc = run_cli("compile", "c.json", "--data", "x.jsonl", cwd=project)  # compile has none
    assert proc.returncode == 2 and "unrecognized arguments: --data x.jsonl" in proc.stderr


def test_version(cli):
    with pytest.raises(SystemExit) as exc:
        cli("--version")
    assert exc.value.code == 0


def test_compiler_imports_no_training_library(tmp_path):
    code = (
        "import sys\n"
        "from mhgen.cli import main\n"
        f"main(['compile', {str(ETC / 'training.json')!r}, '-o', {str(tmp_path)!r}])\n"
        "heavy = {'torch', 'transformers', 'trl', 'peft', 'bitsandbytes', 'datasets'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"


def test_formats_renders_each_format(cli):
    code, out, _ = cli("formats")
    assert code == 0
    headers = [line for line in out.splitlines() if line.startswith("== ")]
    assert headers == [
        "== harmony (openai/gpt-oss-20b)",
        "== chatml (Qwen/Qwen3-8B)",
        "== chatml (Qwen/Qwen3-Coder-30B-A3B-Instruct)",
        "== llama (meta-llama/Llama-2-7b-chat-hf)",
        "== llama3 (meta-llama/Llama-3.1-8B-Instruct)",
        "== mistral (mistralai/Mistral-7B-Instruct-v0.3)",
    ]
    assert (
        "== llama (meta-llama/Llama-2-7b-chat-hf)\n"
        "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nCapital of France? [/INST] Paris. </s>\n"
        "-- trained: ' Paris. </s>'\n"
    ) in out


@pytest.mark.parametrize(
    ("model", "family", "fmt", "template"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3", "llama3", "formats/llama3.py.j2"),
        ("meta-llama/Llama-2-7b-chat-hf", "llama2", "llama", "formats/llama.py.j2"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral", "mistral", "formats/mistral.py.j2"),
        ("Qwen/Qwen3-30B-A3B", "qwen3-moe", "chatml", "formats/chatml-qwen3.py.j2"),
        ("openai/gpt-oss-120b", "gpt-oss", "harmony", "formats/harmony.py.j2"),
        ("tiiuae/falcon-7b", "unknown", "chatml", "formats/chatml.py.j2"),
    ],
)
def test_explain_shows_the_detection(tmp_path, cli, model, family, fmt, template):
    config = write_config(tmp_path, {**MINIMAL, "base_model": model})
    code, out, _ = cli("explain", str(config))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"base_model: {model!r} ")
    assert lines[0].endswith(f"family {family} (by its name)")
    assert lines[1].startswith("  why: ") and "seed" not in lines[1]
    assert lines[2].startswith(f"chat format: {fmt}")
    assert lines[2].endswith(f" (auto-detected), rendered by {template}")
    # only the settings this model's format reads
    assert ("reasoning_effort" in out) is (fmt == "harmony")
    # the example is this config's: its system prompt (MINIMAL's), as the script adds it
    assert "Be brief." in out.split("example, with this config's system prompt:")[1]
    assert "-- trained: " in out


def test_explain_says_whether_the_experts_are_adapted_and_what_it_costs(project, cli):
    """Issue 31, 4: the trainable weights and the plan's memory of LoRA on the experts."""
    from mhgen.pipeline import compile_config
    from mhgen.vram import SHAPES, lora_weight_count, merged_bytes

    path = project / "etc" / "training-gpt-oss-20b.json"
    config, values = json.loads(path.read_text()), compile_config(path).plan.values
    shape = SHAPES["gpt-oss-20b"]
    attention = values["lora_target_modules"]
    extra = lora_weight_count(
        {**values, "lora_target_modules": [*attention, "gate_up", "down"]}, shape
    ) - lora_weight_count(values, shape)
    assert extra > 10e6  # the experts hold most of the model: adapting them is not free
    code, out, _ = cli("explain", "etc/training-gpt-oss-20b.json")
    line = next(x for x in out.splitlines() if x.startswith("experts: "))
    assert code == 0 and line.startswith(
        f'experts: not adapted; adding "gate_up" and "down" to lora_target_modules adapts them: '
        f"{extra / 1e6:.0f}M more LoRA weights, "
    )
    # adapted experts change, so the merge writes them whole: in 16 bits, or MXFP4 again
    adapted = {**values, "lora_target_modules": [*attention, "gate_up", "down"]}
    sixteen, mxfp4 = (
        merged_bytes(adapted, shape) / 2**30,
        merged_bytes(adapted, shape, "mxfp4") / 2**30,
    )
    assert sixteen > 2.5 * mxfp4 and mxfp4 < 16
    assert line.endswith(
        f" GiB more in mhgen plan, and --merge then writes {sixteen:.1f} GiB (the experts in "
        f"bfloat16), {mxfp4:.1f} GiB with --merge-format mxfp4"
    )
    write_config(project, {**config, "lora_target_modules": "all-linear"}, "all.json")
    code, out, _ = cli("explain", "all.json")
    line = next(x for x in out.splitlines() if x.startswith("experts: "))
    assert code == 0 and line.startswith("experts: adapted (gate_up, down): ")
    assert line.endswith(
        f"; --merge writes {sixteen:.1f} GiB (the experts in bfloat16), {mxfp4:.1f} GiB with --merge-format mxfp4"
    )
    code, out, _ = cli("explain", "etc/training-qwen3-8b.json")
    assert code == 0 and "experts:" not in out  # a dense model has none
