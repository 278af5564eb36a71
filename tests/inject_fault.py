"""Run an emitted script with one fault injected, of the kinds a rented GPU box has.

    INJECT_FAULT=FAULT python tests/inject_fault.py SCRIPT ARGS...

FAULT is one of
    nan:N           the N-th micro-batch's loss is NaN (so is its gradient)
    inf-grad:N      after the N-th micro-batch, one LoRA gradient is infinite (its loss is not)
    oom:N           the N-th micro-batch raises torch.OutOfMemoryError, as CUDA does
    oom-load        loading the model raises it
    disk:BYTES      the output folder's disk has BYTES free (shutil.disk_usage)
    kill:save:N     SIGKILL in the middle of writing the N-th checkpoint (its adapter written,
                    its optimizer state not yet)
    kill:rename:N   SIGKILL at the N-th rename of a finished file or folder into place (a
                    checkpoint, mhgen_run.json, a file of the final adapter), before it happens
    kill:delete:N   SIGKILL in the middle of deleting the N-th old checkpoint (a file of it gone)
    stall:N:FILE    once the N-th checkpoint is saved (promoted), write FILE and hang: a machine
                    the test then kills, whole
"""

import os
import re
import runpy
import shutil
import signal
import sys
from pathlib import Path

import torch
import transformers
from transformers import Trainer
from trl import SFTTrainer

kind, *rest = os.environ["INJECT_FAULT"].split(":")
seen = 0


def nth(n: str) -> bool:
    global seen
    seen += 1
    return seen == int(n)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if kind in ("nan", "oom"):
    compute_loss = SFTTrainer.compute_loss

    def faulty_compute_loss(self, model, inputs, *args, **kwargs):
        if model.training and nth(rest[0]):  # a training micro-batch, not an evaluation one
            if kind == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            result = compute_loss(self, model, inputs, *args, **kwargs)
            if isinstance(result, tuple):
                return (result[0] * float("nan"), *result[1:])
            return result * float("nan")
        return compute_loss(self, model, inputs, *args, **kwargs)

    SFTTrainer.compute_loss = faulty_compute_loss
elif kind == "inf-grad":
    training_step = SFTTrainer.training_step

    def faulty_training_step(self, model, *args, **kwargs):
        loss = training_step(self, model, *args, **kwargs)
        if nth(rest[0]):
            trained = next(p for p in model.parameters() if p.requires_grad)
            trained.grad.view(-1)[0] = float("inf")
        return loss

    SFTTrainer.training_step = faulty_training_step
elif kind == "oom-load":

    def from_pretrained(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    transformers.AutoModelForCausalLM.from_pretrained = from_pretrained
elif kind == "disk":
    total = 1 << 40

    def disk_usage(path):
        return shutil._ntuple_diskusage(total, total - int(rest[0]), int(rest[0]))

    shutil.disk_usage = disk_usage
elif kind == "kill" and rest[0] == "save":
    save_optimizer = Trainer._save_optimizer_and_scheduler

    def _save_optimizer_and_scheduler(self, output_dir):
        if nth(rest[1]):
            die()
        return save_optimizer(self, output_dir)

    Trainer._save_optimizer_and_scheduler = _save_optimizer_and_scheduler
elif kind == "kill" and rest[0] == "rename":
    replace = os.replace

    def renaming(src, dst, *args, **kwargs):
        staged = ".checkpoint-in-progress" in str(src) or ".tmp" in str(src)
        if staged and nth(rest[1]):
            die()
        return replace(src, dst, *args, **kwargs)

    os.replace = renaming
elif kind == "kill" and rest[0] == "delete":
    rmtree = shutil.rmtree

    def deleting(path, *args, **kwargs):
        if re.match(r"checkpoint-\d+", Path(path).name) and nth(rest[1]):  # not the staging
            (Path(path) / "trainer_state.json").unlink()  # the first of its files gone
            die()
        return rmtree(path, *args, **kwargs)

    shutil.rmtree = deleting
elif kind == "stall":
    import time

    from transformers.trainer_callback import CallbackHandler

    on_save = CallbackHandler.on_save

    def saved(self, *args, **kwargs):
        if nth(rest[0]):
            Path(rest[1]).write_text("stalled\n")
            while True:
                time.sleep(1)
        return on_save(self, *args, **kwargs)

    CallbackHandler.on_save = saved
else:
    sys.exit(f"inject_fault.py: unknown fault {os.environ['INJECT_FAULT']!r}")

sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
