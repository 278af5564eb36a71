# ---- training: curves, signals, the training order, the Trainer, files written whole

import importlib.util
import inspect
import os
import random
import shutil
import signal
import sys
from pathlib import Path

from .model_files import TESTED_VERSIONS, print_main
from .output_folder import STAGING, discard, promote, remove_replaced_run, whole_checkpoints


class StopRequested(Exception):
    """A signal arrived during an evaluation: the run stops without finishing it."""


class NotFinite(Exception):
    """The loss or its gradient is not a finite number (stop_on_nan)."""


def report_to(reporter: str, output_dir: Path) -> str:
    """Where the trainer sends its curves (report_to), saying where to look at them.
    TensorBoard only where it is installed: it is optional unless the config names it, and then
    the run requires it before it starts."""

    if reporter == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        print_main(
            "note: tensorboard is not installed: no training curves (pip install tensorboard)"
        )
        return "none"
    if reporter == "tensorboard":
        folder = output_dir / "runs"
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder)  # where transformers' callback writes
        print_main(f"training curves: {folder} (tensorboard --logdir {folder})")
    elif reporter != "none":
        print_main(f"training curves: sent to {reporter}")
    return reporter


def rng_state() -> dict:
    """The state of every random generator a Trainer checkpoint holds."""

    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state()}
    state["cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:

    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def exit_on_signals() -> None:
    """Outside training, SIGTERM and Ctrl-C end the script at once with 128 + the signal's
    number (143, 130), as a shell reports a killed command. What was being written then stays in
    its staging file or folder: no half-written result ever takes its final name."""

    def leave(number, frame):
        raise SystemExit(128 + number)

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, leave)


def stop_on_signals():
    """A trainer callback for SIGTERM (a preempted cloud GPU) and Ctrl-C, while it trains.

    The signal handler only notes the signal. At the next boundary (the end of a micro-batch, of
    an evaluation batch, or of a checkpoint being written) every process stops at the same point:
    the last finished optimizer step is saved as a checkpoint, unless it already is, and --resume
    continues from it exactly. A checkpoint being written is never interrupted."""
    import torch
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def __init__(self):
            self.signal_number = 0
            self.stopping = False
            self.saved_step = 0  # the step of the newest checkpoint
            self.first_step = 0  # the first optimizer step this process finished
            self.rng = None  # the generators as this process's last finished step left them
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, self.note)

        def note(self, number, frame):
            self.signal_number = self.signal_number or number

        def requested(self, args) -> bool:
            """Whether any process got a signal: under torchrun all of them decide together."""
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                flag = torch.tensor(self.signal_number, device=args.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                self.signal_number = int(flag.item())
            return self.signal_number != 0 and not self.stopping

        def stop(self, state, control, when: str) -> None:
            self.stopping = True
            step = state.global_step
            name = signal.Signals(self.signal_number).name
            if self.saved_step < step:
                print_main(f"\n{name} {when}: saving a checkpoint of step {step} and stopping")
            else:
                print_main(f"\n{name} {when}: stopping (step {step} is the newest checkpoint)")
            control.should_save = self.saved_step < step
            control.should_evaluate = False
            control.should_training_stop = True

        def on_train_begin(self, args, state, control, **kwargs):
            self.saved_step = state.global_step  # 0, or the checkpoint this run resumed from

        def on_substep_end(self, args, state, control, **kwargs):
            if self.requested(args):
                # the generators as the last finished step left them, as its checkpoint would
                # have held them: --resume then computes this step's micro-batches again
                # exactly. In this process's first step there is none, and nothing to save:
                # the step before it is the run's start or the checkpoint it resumed from
                if self.rng is not None:
                    set_rng_state(self.rng)
                self.stop(state, control, "during a step")

        def on_step_end(self, args, state, control, **kwargs):
            self.first_step = self.first_step or state.global_step
            if self.requested(args):
                self.stop(state, control, f"at the end of step {state.global_step}")
            if args.gradient_accumulation_steps > 1:  # on_substep_end runs only then
                self.rng = rng_state()

        def on_prediction_step(self, args, state, control, **kwargs):
            if self.requested(args):
                self.stop(state, control, "during an evaluation")
                raise StopRequested

        def on_save(self, args, state, control, **kwargs):
            self.saved_step = state.global_step
            if self.requested(args):
                self.stop(state, control, "while a checkpoint was written")

    return StopOnSignal()


class LengthGroupedSampler:
    """The training order: shuffled, then cut into batches of examples of similar length (less
    padding), the batches shuffled again. Seeded by the seed and the epoch, so that --resume
    continues in exactly the same order (transformers' own length grouping draws from the global
    random state)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by the Trainer at every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):

        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        window = 64 * self.batch_size  # sorted by length within windows of 64 batches
        batches, rest = [], []
        for start in range(0, len(order), window):
            group = sorted(order[start : start + window], key=self.lengths.__getitem__)
            whole = len(group) - len(group) % self.batch_size
            batches += [group[i : i + self.batch_size] for i in range(0, whole, self.batch_size)]
            rest += group[whole:]  # at the end, so that every batch before them stays whole
        rng.shuffle(batches)  # so that the lengths do not rise and fall through an epoch
        rest.sort(key=self.lengths.__getitem__)
        return iter([i for batch in batches for i in batch] + rest)


# the Trainer's own methods the script's Trainer extends, with their parameters: no public hook
# does their job (the seeded training order; checkpoints written whole, then renamed in place)
EXTENDED = {"_get_train_sampler": ["train_dataset"], "_get_output_dir": ["trial"]}
EXTENDED["_save_checkpoint"] = ["model", "trial"]


def check_extended(trainer, extended: dict = EXTENDED) -> None:
    """Stop in one line where the installed Trainer no longer has a method the script extends
    (``extended``: their names and parameters)."""
    import transformers

    for name, parameters in extended.items():
        method = getattr(trainer, name, None)
        if method is None or list(inspect.signature(method).parameters)[1:] != parameters:
            sys.exit(
                f"error: transformers {transformers.__version__} has no Trainer.{name}("
                f"{', '.join(['self', *parameters])}), which this script extends (it was tested "
                f"with transformers {TESTED_VERSIONS['transformers']}): install that version"
            )


def trainer_class(length_grouped: bool, stop_on_nan: bool, base=None):
    """SFTTrainer (or ``base``, another TRL trainer) with what a long run on a rented GPU needs:
    checkpoints that are whole or not there at all, a stop at the first loss or gradient that is
    not finite (``stop_on_nan``), and the shape of the batch an out-of-memory error hit.
    ``length_grouped``: the training order is LengthGroupedSampler's (else the Trainer's own, by
    train_sampling_strategy)."""

    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    base = SFTTrainer if base is None else base
    check_extended(base)

    class StopOnNotFinite(TrainerCallback):
        """Before each optimizer step, on every process at once: stop at a loss or a gradient
        that is not finite (float16's loss scaler skips such a step itself)."""

        def __init__(self, trainer):
            self.trainer = trainer

        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            trainer = self.trainer
            bad = torch.zeros((), dtype=torch.long, device=args.device)  # 2: a loss, 1: a gradient
            if trainer.loss_finite is not None:
                bad = torch.where(trainer.loss_finite.to(bad.device), bad, 2)
            trainer.loss_finite = None
            # the trained parameters: the optimizer's (walking the model's modules costs more)
            grads = [
                p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None
            ]
            if grads and trainer.accelerator.scaler is None:  # a shard's own, under FSDP
                local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
                norm = torch.nn.utils.get_total_norm(local).to(bad.device)
                bad = torch.maximum(bad, (~torch.isfinite(norm)).long())
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
            if bad.item():  # the one sync of the check
                what = "the loss" if bad.item() == 2 else "the gradient norm"
                raise NotFinite(f"{what} is not finite at step {state.global_step + 1}")

    class Trainer(base):
        batch_shape = None  # of the micro-batch being trained, for the out-of-memory message
        staging = False
        loss_finite = None  # the losses of the step being trained: all finite (a tensor)

        def __init__(self, *args, **kwargs):
            if not sys.stderr.isatty():  # a log file: the logged lines, no bar redrawn with \r
                kwargs["args"].disable_tqdm = True
            super().__init__(*args, **kwargs)
            if stop_on_nan:
                self.add_callback(StopOnNotFinite(self))

        def _get_train_sampler(self, train_dataset=None):  # the Trainer's hook for the order
            if not length_grouped:
                return super()._get_train_sampler(train_dataset)
            # the examples' lengths as cut to max_length, from their "length" column (the
            # Trainer drops it from the dataset it passes here; the rows are the same)
            lengths = self.train_dataset.select_columns(["length"]).with_format("numpy")[:][
                "length"
            ]
            lengths = [min(int(n), self.args.max_length) for n in lengths]
            return LengthGroupedSampler(
                lengths, self.args.per_device_train_batch_size, self.args.seed
            )

        def training_step(self, model, inputs, *args, **kwargs):
            self.batch_shape = "a micro-batch", tuple(inputs["input_ids"].shape)
            loss = super().training_step(model, inputs, *args, **kwargs)
            if stop_on_nan:  # read once per optimizer step (StopOnNotFinite): no sync here
                finite = torch.isfinite(loss)
                self.loss_finite = finite if self.loss_finite is None else self.loss_finite & finite
            return loss

        def prediction_step(self, model, inputs, *args, **kwargs):
            self.batch_shape = "an evaluation batch", tuple(inputs["input_ids"].shape)
            return super().prediction_step(model, inputs, *args, **kwargs)

        def _get_output_dir(self, trial):  # where Trainer puts a checkpoint while it writes it
            output_dir = super()._get_output_dir(trial)
            return os.path.join(output_dir, STAGING) if self.staging else output_dir

        def _save_checkpoint(self, model, trial):
            """Trainer's checkpoint, written into STAGING and renamed into place once every file
            is on disk (a kill mid-save leaves no checkpoint that looks whole); then the newest
            save_total_limit are kept."""
            output_dir = Path(self.args.output_dir)
            if self.is_world_process_zero():
                shutil.rmtree(output_dir / STAGING, ignore_errors=True)  # a killed save's
            self.staging = True
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.staging = False
            self.accelerator.wait_for_everyone()  # every process has written its part
            if self.is_world_process_zero():
                name = f"checkpoint-{self.state.global_step}"
                promote(output_dir / STAGING / name, output_dir / name)
                # a damaged one stays
                for old in whole_checkpoints(output_dir)[: -self.args.save_total_limit]:
                    discard(old)
                shutil.rmtree(output_dir / STAGING, ignore_errors=True)  # left empty
                remove_replaced_run(output_dir)  # --overwrite's: this run has a checkpoint
            self.accelerator.wait_for_everyone()

    return Trainer


def fail(message: str, code: int, trainer=None) -> None:
    """Stop every process with ``code``; the main one says why, in one line, the last one (after
    the trainer's progress bars, closed first)."""
    for callback in trainer.callback_handler.callbacks if trainer is not None else []:
        for name in ("training_bar", "prediction_bar"):  # transformers' ProgressCallback
            if getattr(callback, name, None) is not None:
                getattr(callback, name).close()
    if int(os.environ.get("RANK", "0")) == 0:
        print(message, file=sys.stderr, flush=True)
    sys.exit(code)


# what gloo and NCCL say when another process of the run is gone (its machine or process stopped)
LOST_CONTACT = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
    "ncclRemoteError",
    "remote process exited",
    "Watchdog caught collective operation timeout",
)


def lost_contact(error: BaseException, output_dir: Path) -> str:
    """When ``error`` says another process of the run is gone: this process's one line on it,
    and on what to run next ("" for another error)."""
    import torch

    said = next((words for words in LOST_CONTACT if words in str(error)), "")
    if not said and not isinstance(error, torch.distributed.DistError):
        return ""
    whole = whole_checkpoints(output_dir)
    newest = f"{whole[-1].name} is the newest checkpoint" if whole else "no checkpoint is saved yet"
    return (
        f"error: process {os.environ.get('RANK', '0')} lost contact with the run "
        f"({said or type(error).__name__}): another machine or process of it stopped; {newest} "
        "(the same command with --resume, on every machine, continues from it)"
    )


def out_of_memory(
    estimated_gib: float | None, gradient_checkpointing: bool, in_4bit: bool, batch
) -> str:
    """What to change when the GPU ran out of memory on ``batch`` (what it was, its shape), or
    while the model loaded (None); ``estimated_gib``: mhgen plan's peak for the config."""
    import torch

    where = "while loading the model"
    if batch is not None:
        kind, (rows, tokens) = batch
        where = f"on {kind} of {rows} x {tokens} tokens"
    facts = (
        []
        if estimated_gib is None
        else [f"mhgen plan estimated {estimated_gib} GiB for this config"]
    )
    if torch.cuda.is_available():
        facts.append(
            f"the GPU has {torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB"
        )
    held = f" ({', '.join(facts)})" if facts else ""
    advice = "lower per_device_train_batch_size (raise gradient_accumulation_steps to keep the "
    advice += "effective batch) or max_seq_length"
    if not gradient_checkpointing:
        advice += ", or turn on use_gradient_checkpointing"
    if not in_4bit:
        advice += ", or turn on load_in_4bit"
    return (
        f"error: the GPU ran out of memory {where}{held}; {advice}; "
        "`mhgen plan CONFIG --gpu-memory GB` shows what fits"
    )


def not_finite(reason: str, output_dir: Path) -> str:
    """What to do when a step's loss or gradient is not finite; nothing of that step was applied."""
    whole = whole_checkpoints(output_dir)
    newest = f"{whole[-1].name} is the newest checkpoint" if whole else "no checkpoint is saved yet"
    return (
        f"error: {reason}, before the optimizer applied it: the learning rate may be too high "
        "(learning_rate), float16 may overflow (dtype: bfloat16 does not), or that step's data "
        f'is broken; {newest} (--resume retries from it; "stop_on_nan": false trains on)'
    )


def leave_process_group(trainer) -> None:
    """Under torchrun: every process waits until the main one has written everything, then
    leaves the process group. (A process that exits while its group still runs can abort, and
    torchrun then kills the others.)"""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        trainer.accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()


def adapters_in_float32(model) -> None:
    """The trainable weights (LoRA's) in float32."""
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
