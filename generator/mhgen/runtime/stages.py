# ---- the stages main() goes through: the command line, the data, training

import argparse
import functools
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from .data import (
    IGNORE_INDEX,
    check_chat_template,
    check_rows,
    describe,
    first_conversations,
    seconds_since,
    split_eval,
    tokenized,
)
from .merge import MERGE_FORMATS
from .model_files import load_tokenizer, note_untested_versions, print_main, require
from .output_folder import (
    remove_replaced_run,
    save_adapter,
    set_aside_replaced_run,
    unshared_output,
    write_record,
)
from .sources import ChatFormat, DataSource
from .training import (
    NotFinite,
    StopRequested,
    exit_on_signals,
    fail,
    leave_process_group,
    lost_contact,
    not_finite,
)

EXIT_NOT_FINITE = 3  # exit status when stop_on_nan stops the run
EXIT_OUT_OF_MEMORY = 4  # exit status when the GPU runs out of memory
EXIT_LOST_CONTACT = 5  # exit status when another machine or process of the run stopped


def quiet_known_warnings() -> None:
    """Silence the library warnings known to be harmless in this script, and only those."""

    # bitsandbytes (which peft imports when it is installed), on a CPU with AVX-512 BF16, looks
    # for an optional kernel package and says so when it is missing; its own CPU code runs instead
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # TRL reads model.is_gradient_checkpointing, which transformers 5 deprecates
    warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
    # TRL's DPO turns checkpointing off for the reference forward by the old names
    old_names = "`gradient_checkpointing_(en|dis)able` is deprecated"
    warnings.filterwarnings("ignore", old_names, FutureWarning)


def start(
    doc: str, data: str, output_dir: str, max_steps: int, mxfp4: bool = False
) -> argparse.Namespace:
    """The script's command line; ``doc``, the script's docstring, gives its --help (the summary
    and the commands), and the other arguments are the defaults of --data, --output-dir and
    --max-steps, and whether --merge can write the experts in MXFP4 (gpt-oss). args.merge is
    None, or the merge's format (MERGE_FORMATS); args.data_cache a Path. Known harmless warnings
    are silenced, SIGTERM and Ctrl-C end the script at once (exit_on_signals) until training
    starts, and a missing library stops it in one line. Started again by torchrun
    (--max-restarts), the run resumes."""
    quiet_known_warnings()
    exit_on_signals()
    require("transformers", "datasets")  # what every command needs
    paragraphs = doc.split("\n\n")
    parser = argparse.ArgumentParser(
        description=paragraphs[0],
        epilog=next((p for p in paragraphs if p.startswith("Train on")), None),  # the commands
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default=data, help="training data: a file, folder or Hub id")
    parser.add_argument("--output-dir", default=output_dir, help="where the adapter is written")
    parser.add_argument(
        "--data-cache",
        metavar="DIR",
        help="where the checked and tokenized data is kept for the next run (default: "
        "mhgen-data-cache beside the output folder); on several machines, a disk of each one's "
        "own or one they share",
    )
    parser.add_argument("--max-steps", type=int, default=max_steps, help="-1: NUM_TRAIN_EPOCHS")
    parser.add_argument("--dry-run", action="store_true", help="check the data, load no model")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="start over, replacing the run")
    parser.add_argument(
        "--sample", type=int, default=0, metavar="N", help="replies to N held-out prompts"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="then write output_dir/merged: the base model with the adapter merged in (alone on "
        "a finished run: only that)",
    )
    if mxfp4:
        parser.add_argument(
            "--merge-format",
            choices=MERGE_FORMATS,
            default="dtype",
            help="--merge's adapted experts: in DTYPE (exact; the default), or in MXFP4 as "
            "gpt-oss ships them (a third of the size, but MXFP4's rounding is larger than a "
            "typical adapter's change and undoes most of it)",
        )
    args = parser.parse_args()
    merge_format = getattr(args, "merge_format", "dtype")
    if merge_format != "dtype" and not args.merge:
        parser.error(f"--merge-format {merge_format} goes with --merge")
    args.merge = merge_format if args.merge else None
    if args.sample < 0:
        parser.error(f"--sample {args.sample}: N must be 0 (no samples) or more")
    args.data_cache = Path(args.data_cache or Path(args.output_dir).parent / "mhgen-data-cache")
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if restarts:  # torchrun --max-restarts started the run again after a failure
        print_main(f"torchrun restarted the run (restart {restarts}): resuming it")
        args.resume, args.overwrite = True, False
    note_untested_versions()
    return args


def check_data(
    data: DataSource,
    evaluation: DataSource | None,
    cache: Path,
    base_model: str,
    chat: ChatFormat,
    template_check: str,
):
    """Every row of the data checked, then the tokenizer loaded and the first examples' text
    compared with its own chat template; returns the tokenizer."""
    tokenizer = check_rows_and_load_tokenizer(data, evaluation, cache, base_model)
    check_chat_template(tokenizer, first_conversations(data, 3), chat, template_check)
    return tokenizer


def check_rows_and_load_tokenizer(
    data: DataSource, evaluation: DataSource | None, cache: Path, base_model: str
):
    """Every row of the data checked (the first problems named, all in one run), then the
    tokenizer loaded: the data's problems come before any download."""
    from datasets import disable_progress_bars

    if not sys.stderr.isatty():
        disable_progress_bars()  # bars redrawn into a log are noise (at a terminal they stay)
    for source in [data] if evaluation is None else [data, evaluation]:
        check_rows(source, cache)
    return load_tokenizer(base_model)


def dry_run(
    data: DataSource,
    evaluation: DataSource | None,
    base_model: str,
    tokenize,
    chat: ChatFormat,
    template_check: str,
    max_length: int,
) -> None:
    """--dry-run: check the data as a run does, print the first example as text and as trained
    and untrained tokens, and the length profile, then compare the text with the tokenizer's own
    chat template; loads no model, leaves no file behind."""
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder)
        tokenizer = check_rows_and_load_tokenizer(data, evaluation, cache, base_model)
        (conversation,) = first_conversations(data, 1)
        example = tokenize(tokenizer, **conversation)
        for side, text in zip(data.sides, chat.texts(conversation), strict=True):
            labels = example[side + "labels"]
            trained = [token for token in labels if token != IGNORE_INDEX]
            what, counts = "first example", ""
            if data.pairs:  # a pair: each conversation, and how many tokens carry its loss
                what = "first pair's " + ("rejected" if side else "chosen") + " conversation"
                counts = f" ({len(labels)} tokens, {len(trained)} trained)"
            print(f"--- {what}, as the model sees it{counts}:")
            print(text)
            print("--- the tokens it is trained to generate (the rest is context):")
            print(repr(tokenizer.decode(trained)))
        tokens = functools.partial(tokenize, tokenizer)
        _, profile = tokenized(data, tokens, cache, max_length, kept=False)
        print("--- " + describe(profile))
        check_chat_template(tokenizer, first_conversations(data, 3), chat, template_check)


def examples(
    data: DataSource,
    evaluation: DataSource | None,
    tokenize,
    cache: Path,
    max_length: int,
    eval_split: float,
    seed: int,
):
    """(train, evaluation) examples, tokenized by ``tokenize`` and cut to ``max_length``: the
    evaluation data's, else ``eval_split`` of the data held out with ``seed`` (or none)."""
    from datasets import disable_progress_bars

    examples, profile = tokenized(data, tokenize, cache, max_length)
    print_main(describe(profile))
    disable_progress_bars()  # of TRL's passes over the examples, already cut (tokenize_rows)
    if not len(examples):
        sys.exit(
            f"error: truncation to MAX_SEQ_LENGTH={max_length} tokens left no example with an "
            'assistant token to train on; raise "max_seq_length" in the config'
        )
    if evaluation is not None:
        return examples, tokenized(evaluation, tokenize, cache, max_length)[0]
    return split_eval(examples, eval_split, seed)


def evaluation_missing(state: dict, args) -> bool:
    """Whether the evaluation due at a checkpoint's step is not in its log: a signal stopped the
    run during it or just before it (a run stops without evaluating)."""
    step = state["global_step"]
    if args.eval_strategy != "steps" or step == 0 or step % args.eval_steps:
        return False
    return not any(
        "eval_loss" in entry and entry.get("step") == step for entry in state["log_history"]
    )


def train(
    trainer,
    stopper,
    checkpoint: Path | None,
    tokenizer,
    overwrite: bool,
    config_sha256: str,
    inputs: dict,
    out_of_memory,
) -> None:
    """Train from ``checkpoint`` (None: from the start), with ``stopper`` (stop_on_signals) among
    the trainer's callbacks, then save the adapter and the finished run's record. A signal saves
    the last finished step and exits with 128 + its number; a loss that is not finite or an
    out-of-memory error (``out_of_memory``: its message, from the batch it hit) exits with
    EXIT_NOT_FINITE or EXIT_OUT_OF_MEMORY."""
    import torch

    output_dir = Path(trainer.args.output_dir)
    per_device, accumulation = (
        trainer.args.per_device_train_batch_size,
        trainer.args.gradient_accumulation_steps,
    )
    world = trainer.args.world_size
    dpo = getattr(trainer.args, "beta", None) is not None  # TRL's DPOConfig
    unit = "pairs (a chosen and a rejected sequence each)" if dpo else "sequences"
    print_main(
        f"effective batch: {per_device} per device x {accumulation} accumulation steps x "
        f"{world} processes = {per_device * accumulation * world} {unit} per optimizer step"
    )
    problem = unshared_output(trainer, output_dir)
    if problem:
        fail(problem, 1, trainer)
    if trainer.is_world_process_zero():
        if overwrite:
            set_aside_replaced_run(output_dir)
        write_record(output_dir, config_sha256, inputs, finished=False)
    if checkpoint is not None:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        step, epoch = state["global_step"], state["epoch"]
        print_main(f"resuming from {checkpoint.name}: step {step}, epoch {epoch:.2f}")
        if evaluation_missing(state, trainer.args):
            trainer.args.eval_on_start = True  # transformers evaluates before the first step
            print_main(f"the evaluation of step {step} did not run (a signal stopped it): first it")
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except StopRequested:  # a signal during an evaluation: save the step it followed
        if stopper.saved_step < trainer.state.global_step:
            trainer._save_checkpoint(trainer.model_wrapped, trial=None)  # as Trainer saves one
    except NotFinite as exc:
        fail(not_finite(str(exc), output_dir), EXIT_NOT_FINITE, trainer)
    except torch.OutOfMemoryError:
        fail(out_of_memory(trainer.batch_shape), EXIT_OUT_OF_MEMORY, trainer)
    except RuntimeError as exc:  # gloo's and NCCL's errors are RuntimeErrors
        message = lost_contact(exc, output_dir)
        if not message:
            raise
        sys.stdout.flush()
        print(message, file=sys.stderr, flush=True)  # every process: the main one may be gone
        os._exit(EXIT_LOST_CONTACT)  # at once: leaving the process group would wait for it
    if stopper.signal_number:
        step = trainer.state.global_step
        if step:
            print_main(f"stopped at step {step}; continue with --resume")
        else:
            print_main("stopped before the first optimizer step; nothing is saved")
        leave_process_group(trainer)
        sys.exit(128 + stopper.signal_number)
    exit_on_signals()  # from here a signal ends the run at once: the adapter is whole or not there
    save_adapter(trainer, tokenizer, output_dir)
    if trainer.is_world_process_zero():
        log = trainer.state.log_history
        write_record(
            output_dir, config_sha256, inputs, finished=True, metrics=result.metrics, log=log
        )
        remove_replaced_run(output_dir)  # a run that saved no checkpoint
        first, last = stopper.first_step, trainer.state.global_step
        print_main(f"adapter saved to {output_dir} (this run trained steps {first} to {last})")
    leave_process_group(trainer)


def load_seeded(load, seed: int, out_of_memory):
    """``load()``, the model, after seeding every generator with ``seed`` (LoRA's initial weights
    come from it), saying how long it took; an out-of-memory error on the way ends the run with
    EXIT_OUT_OF_MEMORY and ``out_of_memory(None)``, what to change."""
    import torch
    from transformers import set_seed

    set_seed(seed)
    started = time.monotonic()
    try:
        model = load()
    except torch.OutOfMemoryError:
        fail(out_of_memory(None), EXIT_OUT_OF_MEMORY)
    print_main(f"model loaded in {seconds_since(started)}")
    return model
