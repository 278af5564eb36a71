# ---- the output folder: files written whole, checkpoints, the run record, --resume

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from .fingerprints import fingerprint, tokenizer_fingerprint
from .model_files import print_main
from .sources import DataSource

STAGING = ".checkpoint-in-progress"  # where a checkpoint is written before it is renamed in place


def flushed(path: Path) -> None:
    """Everything written to ``path`` (a file, or a folder and the files in it) is on disk."""
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if item.is_dir() and os.name != "posix":  # only POSIX can sync a folder's entries
            continue
        fd = os.open(item, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def promote(staged: Path, target: Path) -> None:
    """Rename a fully written ``staged`` file or folder to ``target`` in one step, replacing it."""
    flushed(staged)
    if target.is_dir():  # the same step saved again (a stopped run): the new one wins
        old = staged.with_name(staged.name + ".old")
        os.replace(target, old)
        os.replace(staged, target)
        shutil.rmtree(old)
    else:
        os.replace(staged, target)
    flushed(target.parent)


def discard(checkpoint: Path) -> None:
    """Delete a checkpoint folder: first out of sight in one rename, so that a kill while it is
    deleted leaves no half of it that looks like a checkpoint."""
    gone = checkpoint.parent / STAGING / (checkpoint.name + ".deleted")
    gone.parent.mkdir(exist_ok=True)
    os.replace(checkpoint, gone)
    shutil.rmtree(gone)


def run_inputs(data: DataSource, evaluation: DataSource | None, tokenizer, max_steps: int) -> dict:
    """What a run depends on besides the settings; --resume needs all of it unchanged."""
    inputs = {"data": str(data.path), "data_fingerprint": fingerprint(data)}
    if evaluation is not None:
        inputs["eval_data_fingerprint"] = fingerprint(evaluation)
    inputs["tokenizer_fingerprint"] = tokenizer_fingerprint(tokenizer)
    inputs["max_steps"] = max_steps
    return inputs


def checkpoints(output_dir: Path) -> list[Path]:
    """The trainer's checkpoint-STEP folders in output_dir, by step."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]))


def whole_checkpoints(output_dir: Path) -> list[Path]:
    """Those checkpoints that are whole (see checkpoint_problem), by step."""
    return [c for c in checkpoints(output_dir) if not checkpoint_problem(c)]


def checkpoint_problem(checkpoint: Path) -> str:
    """Why a checkpoint cannot be resumed from ("" when it is whole). The script writes each one
    whole or not at all; this finds those an older script or a damaged disk left behind."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its trainer_state.json is missing or cut short"
    adapter = checkpoint / "adapter_model.safetensors"
    try:
        with adapter.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        if adapter.stat().st_size < 8 + size + max(ends, default=0):
            return "its adapter_model.safetensors is cut short"
    except (OSError, ValueError, KeyError, TypeError):
        return "its adapter_model.safetensors is missing or damaged"
    optimizer = checkpoint / "optimizer.pt"
    if optimizer.exists() and not zipfile.is_zipfile(optimizer):  # torch.save writes a zip
        return "its optimizer.pt is cut short"
    return ""


def check_output_dir(
    output_dir: Path, config_sha256: str, inputs: dict, resume: bool, overwrite: bool
) -> Path | None:
    """Never replace a run, mix two configs in one folder, or resume on other data by accident.
    Returns the checkpoint to resume from: the newest whole one."""
    if resume and overwrite:
        sys.exit("error: --resume continues the run in the output folder, --overwrite replaces it")
    if overwrite:
        return None
    previous, saved = run_record(output_dir), checkpoints(output_dir)
    if previous is None:
        if saved:
            sys.exit(
                f"error: {output_dir} holds checkpoints of no known run; --overwrite replaces them"
            )
        if resume:  # killed before it saved anything: the same command starts it
            print_main(f"{output_dir} holds no run to resume yet: starting at step 1")
        return None
    if previous.get("config_sha256") != config_sha256:
        sys.exit(f"error: {output_dir} holds a run of another config; use another --output-dir")
    if previous.get("finished"):
        sys.exit(f"error: {output_dir} holds a finished run; pass --overwrite to replace it")
    if not resume:
        if saved:
            sys.exit(
                f"error: {output_dir} holds an unfinished run (newest: {saved[-1].name}); pass "
                "--resume to continue it or --overwrite to start over"
            )
        return None
    contents = {"data_fingerprint": "training data", "eval_data_fingerprint": "evaluation data"}
    for key, value in inputs.items():
        before = previous.get("inputs", {}).get(key)
        if before != value:
            change = f"{key} changed: {before} -> {value}"
            if key in contents:
                change = f"the content of the {contents[key]} changed"
            elif key == "tokenizer_fingerprint":
                change = "the tokenizer changed (its vocabulary, special tokens or chat template)"
            sys.exit(
                f"error: --resume needs the inputs the run started with, and {change}; "
                "restore it, or pass --overwrite to start over"
            )
    for checkpoint in reversed(saved):
        why = checkpoint_problem(checkpoint)
        if not why:
            return checkpoint
        print_main(f"skipping {checkpoint.name}: {why} (it is left as it is)")
    print_main(f"{output_dir} holds no whole checkpoint yet: starting at step 1")
    return None


# what a run writes into its output folder: the script, the Trainer, PEFT and the tokenizer
RUN_NAMES = ("mhgen_run.json", ".mhgen_run.json.tmp", STAGING, "samples.jsonl", "merged", "runs")
RUN_NAMES += ("README.md", "training_args.bin", "chat_template.jinja", "special_tokens_map.json")
RUN_NAMES += ("added_tokens.json", "vocab.json", "merges.txt", "generation_config.json")
RUN_PREFIXES = ("checkpoint-", "adapter_", "tokenizer")


def set_aside_replaced_run(output_dir: Path) -> None:
    """--overwrite: the replaced run leaves output_dir in one rename, to OUTPUT_DIR.replaced, so
    that nothing of it can pass for the new run's (a kill at any moment leaves the old run whole
    there); files of the user's come back at once. It is deleted when the new run has its first
    checkpoint, or its adapter (remove_replaced_run)."""
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    if output_dir.resolve() in (Path.cwd(), *Path.cwd().parents):
        sys.exit(f"error: --overwrite replaces {output_dir}, which holds this folder: pass another")
    aside = replaced(output_dir)
    remove_replaced_run(output_dir)  # an earlier --overwrite, stopped before its first checkpoint
    try:
        os.rename(os.path.realpath(output_dir), aside)  # a symlinked folder: its target
    except OSError as exc:
        sys.exit(
            f"error: --overwrite moves the replaced run aside first, and renaming {output_dir} to "
            f"{aside} failed ({exc.strerror}): empty {output_dir} yourself, or pass another "
            "--output-dir"
        )
    Path(os.path.realpath(output_dir)).mkdir()
    return_users_files(aside, output_dir)
    print_main(f"the replaced run is in {aside} until this one saves its first checkpoint")


def replaced(output_dir: Path) -> Path:
    """Where --overwrite puts the run it replaces: beside output_dir, named after it."""
    output_dir = Path(os.path.realpath(output_dir))  # a symlinked folder: beside its target
    return output_dir.with_name(output_dir.name + ".replaced")


def return_users_files(aside: Path, output_dir: Path) -> None:
    """Move back into output_dir what the set-aside folder holds that no run writes."""
    for entry in sorted(aside.iterdir()):
        if entry.name in RUN_NAMES or entry.name.startswith(RUN_PREFIXES):
            continue
        if not (output_dir / entry.name).exists():
            os.rename(entry, output_dir / entry.name)


def remove_replaced_run(output_dir: Path) -> None:
    """Delete the run --overwrite set aside, if there is one (the user's files return first)."""
    aside = replaced(output_dir)
    if aside.is_dir():
        return_users_files(aside, output_dir)
        shutil.rmtree(aside)


def write_record(
    output_dir: Path, config_sha256: str, inputs: dict, finished: bool, metrics=None, log=None
) -> None:
    """mhgen_run.json: the script's constants and inputs, whether the run finished, its metrics.
    Written whole or not at all (a rename), so a finished record means a whole adapter."""
    record = {"config_sha256": config_sha256, "finished": finished, "inputs": inputs}
    record["config"] = {name: value for name, value in globals().items() if name.isupper()}
    if metrics is not None:
        record["metrics"], record["log_history"] = metrics, log
    output_dir.mkdir(parents=True, exist_ok=True)
    staged = output_dir / ".mhgen_run.json.tmp"
    staged.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    promote(staged, output_dir / "mhgen_run.json")


def run_record(output_dir: Path) -> dict | None:
    """output_dir's mhgen_run.json (see write_record), None where there is none."""
    record = output_dir / "mhgen_run.json"
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None


def finished_run(output_dir: Path, config_sha256: str) -> bool:
    """Whether output_dir holds a finished run of this config: its record says so, and the
    record is written finished only once the adapter is whole."""
    previous = run_record(output_dir) or {}
    return previous.get("config_sha256") == config_sha256 and previous.get("finished") is True


def check_disk(output_dir: Path, disk_bytes: dict, keep: int, train: bool, merge) -> None:
    """Stop before anything loads if output_dir's disk cannot hold what the run writes: to
    train, the ``keep`` checkpoints it keeps, one more while it is written, and the adapter; to
    merge (``merge``: its format, or None), the merged model. ``disk_bytes``: their sizes
    ("checkpoint", "adapter", "merged", and "merged_mxfp4" where it differs), None where mhgen
    knows no shape for the model (then nothing is checked)."""
    if disk_bytes is None:
        return
    writes = {}
    if train:
        size = f"{disk_bytes['checkpoint'] / 2**30:.2f} GiB"
        what = f"{keep} + 1 checkpoints of {size} and the adapter"
        writes[what] = (keep + 1) * disk_bytes["checkpoint"] + disk_bytes["adapter"]
    if merge:
        size = disk_bytes.get(f"merged_{merge}", disk_bytes["merged"])
        writes[f"the merged model of {size / 2**30:.2f} GiB"] = size
    needed = sum(writes.values())
    folder = output_dir.resolve()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < needed:
        sys.exit(
            f"error: {folder} has {free / 2**30:.2f} GiB free and the run writes up to "
            f"{needed / 2**30:.2f} GiB ({'; '.join(writes)}): free some space, lower "
            "save_total_limit, or pass another --output-dir"
        )


def save_adapter(trainer, tokenizer, output_dir: Path) -> None:
    """The LoRA adapter (not the base weights) and the tokenizer into output_dir, each file
    renamed into place once it is written whole."""
    staged = output_dir / STAGING / "adapter"
    if trainer.is_world_process_zero():
        shutil.rmtree(staged, ignore_errors=True)
    trainer.save_model(str(staged))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(staged))
        for file in sorted(staged.iterdir()):
            promote(file, output_dir / file.name)
        shutil.rmtree(output_dir / STAGING)


def unshared_output(trainer, output_dir: Path) -> str:
    """Under torchrun: why not every process sees the files the main process writes into
    output_dir ("" when they do). On several machines it must be on storage they share: the
    main process promotes checkpoints there (under FSDP every process writes a part) and every
    process resumes from them. Nothing else is written before this."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return ""
    main = trainer.is_world_process_zero()
    token = [os.urandom(8).hex() if main else None]
    probe = output_dir / ".mhgen-shared-probe"
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text(token[0], encoding="utf-8")
    torch.distributed.broadcast_object_list(token, src=0)
    try:
        seen = probe.read_text(encoding="utf-8") == token[0]
    except OSError:
        seen = False
    blind = torch.tensor(0 if seen else 1, device=trainer.args.device)
    torch.distributed.all_reduce(blind)  # how many processes do not see it
    trainer.accelerator.wait_for_everyone()
    if main:
        probe.unlink()
    if not blind.item():
        return ""
    return (
        f"error: {output_dir}: {int(blind.item())} of {trainer.args.world_size} processes do not "
        "see the files the main process writes there; on several machines the output folder "
        "must be on storage they all share (the same NFS or Lustre path on each)"
    )
