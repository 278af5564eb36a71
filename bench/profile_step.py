#!/usr/bin/env python3
"""Where an optimizer step of the emitted script goes on the CPU, against a plain TRL SFT script:
CPU time per phase of a step on each side, then the speed with each difference removed.

    python bench/profile_step.py                          # tiny Qwen3, float32, batch 8, 60 steps
    python bench/profile_step.py --without optim nan_checks   # also: the emitted side without these
    python bench/profile_step.py --without each all --rounds 2  # every ablation (about 3 minutes)
    python bench/profile_step.py --vocab 4096             # bench_train's tiny as it is

Both sides train a random tiny Qwen3 (bench_train's "tiny" with --vocab tokens, nothing is
downloaded) in float32 on bench_train's "uniform" chat data (equal-length examples, cut at --seq:
about 2% padding, the same on both sides), batch 8, LoRA r16 on all linear layers, no dropout,
gradient checkpointing, logging every step: the emitted script as mhgen compiles it (batching
"padded") and bench_train's BASELINE in float32. The default vocabulary is 512, not the tiny
model's 4096 (the tokenizer has 400 tokens): at 4096 TRL's LM head alone is 3/4 of a CPU step,
and its run-to-run noise hides the differences measured here.

One child process trains every side in turn, in rounds (A B ... B A, after a warm-up round that
is not counted), each run a fresh start of the script in the same process. The child wraps the
Trainer's pieces (the batch fetch, compute_loss, TRL's fused LM head, backward, grad clipping,
the optimizer, the scheduler, each callback, logging, the emitted Trainer's overrides) with
timers of the main thread's CPU time and wall time, each phase's own time without the phases
nested in it; a step runs from one batch fetch to the next, and the steps after --warmup are
averaged. CPU time is the steadier: another job on the machine slows wall time more. torch runs
one thread (--threads), so all its work is on the main thread; the other threads (TensorBoard's
writer) are one row. Then train_runtime (which train_steps_per_second divides by) in pieces,
wall time: it holds the first steps and the checkpoint written at the last step. Medians over
the rounds. On a shared two-core machine a whole step still varies by 10-20% from run to run
(the same aten ops run faster or slower); the small rows (callbacks, optimizer) are steadier.

The ablations run the emitted script with one difference from the plain side removed (patched
in the child; the script is unchanged); "exact" says whether the trained numbers stay the same.
Their last columns take a step's time outside the model's forward and backward, as a share of
the forward and backward of the same run, so that a slower moment of the machine cancels out.
--report DIR prints the tables of an earlier run again. No timing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

# what each ablation removes from the emitted side, and whether the trained numbers stay the same
ABLATIONS = {
    "optim": ("fused AdamW (optim='adamw_torch_fused', the plain side's default)", False),
    "nan_checks": ("StopOnNotFinite and the training_step override (stop_on_nan)", True),
    "signals": ("the StopOnSignal callback", True),
    "tensorboard": ("TensorBoardCallback (report_to='none', the plain side's)", True),
    "printer": ("PrinterCallback: the progress bar instead (disable_tqdm=False)", True),
    "checkpoint": ("the checkpoint at the last step (save_strategy='no', the plain side's)", True),
    "schedule": ("cosine with warmup: linear, none (the plain side's)", False),
}
ALL, EACH = "all", "each"  # --without: a side without every difference; a side for each
ONCE = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end")  # not per step
MODEL = ("forward: layers + LoRA", "forward: LM head, loss, entropy, accuracy",
         "backward: layers + LoRA + recompute", "backward: LM head")  # fmt: skip
SPS = "steps_per_second"  # the Trainer's train_steps_per_second
TOTALS = ("rest of the loop (untimed)", "other threads", "step, CPU of all threads", "step, wall")


# ---- the child: the runs, with timers


class Clock:
    """Exclusive main-thread CPU time and wall time per phase: a phase's time less the phases
    nested in it (``total`` holds name: CPU seconds, "wall " + name: wall seconds)."""

    def __init__(self):
        self.total: dict[str, float] = collections.defaultdict(float)
        self.stack: list[list[float]] = []

    @contextlib.contextmanager
    def phase(self, name: str):
        self.stack.append([0.0, 0.0])
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            yield
        finally:
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            nested_cpu, nested_wall = self.stack.pop()
            self.total[name] += cpu - nested_cpu
            self.total["wall " + name] += wall - nested_wall
            if self.stack:
                self.stack[-1][0] += cpu
                self.stack[-1][1] += wall

    def wrap(self, owner, attribute: str, name: str) -> None:
        function = owner.__dict__[attribute]
        static = isinstance(function, staticmethod)
        function = function.__func__ if static else function

        @functools.wraps(function)
        def timed(*args, **kwargs):
            with self.phase(name):
                return function(*args, **kwargs)

        setattr(owner, attribute, staticmethod(timed) if static else timed)


def child(plan: list[dict], out: Path) -> None:
    import runpy

    import accelerate
    import torch
    import transformers
    import trl
    from transformers.trainer_callback import CallbackHandler
    from transformers.trainer_utils import SaveStrategy
    from transformers.training_args import OptimizerNames, SchedulerType
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction

    clock = Clock()
    Trainer, SFTTrainer = transformers.Trainer, trl.SFTTrainer
    for owner, attribute, name in [
        (Trainer, "get_batch_samples", "data: sampler, dataset, collate"),
        (Trainer, "_prepare_inputs", "training_step, the rest"),
        (SFTTrainer, "compute_loss", "forward: layers + LoRA"),
        (ChunkedLogProbFunction, "forward", "forward: LM head, loss, entropy, accuracy"),
        (accelerate.Accelerator, "gather_for_metrics", "training_step, the rest"),
        (accelerate.Accelerator, "backward", "backward: layers + LoRA + recompute"),
        (ChunkedLogProbFunction, "backward", "backward: LM head"),
        (Trainer, "training_step", "training_step, the rest"),
        (Trainer, "floating_point_ops", "floating_point_ops"),
        (Trainer, "_clip_grad_norm", "grad norm + clipping"),
        (Trainer, "_get_grad_norm", "grad norm + clipping"),
        (accelerate.optimizer.AcceleratedOptimizer, "step", "optimizer step"),
        (torch.optim.lr_scheduler.LRScheduler, "step", "lr scheduler step"),
        (torch.nn.Module, "zero_grad", "zero_grad"),
        (Trainer, "_maybe_log_save_evaluate", "logging (loss .item(), log history)"),
        (SFTTrainer, "log", "logging (loss .item(), log history)"),
    ]:
        clock.wrap(owner, attribute, name)

    run: dict = {}  # the run being trained: what it leaves out, what it records

    def call_event(self, event, args, state, control, **kwargs):  # CallbackHandler's, timed
        run["marks"].setdefault(event, time.perf_counter())
        for callback in self.callbacks:
            start = time.perf_counter()
            with clock.phase(f"callback: {type(callback).__name__}"):
                result = getattr(callback, event)(
                    args, state, control, model=self.model,
                    processing_class=self.processing_class, optimizer=self.optimizer,
                    lr_scheduler=self.lr_scheduler, train_dataloader=self.train_dataloader,
                    eval_dataloader=self.eval_dataloader, **kwargs,
                )  # fmt: skip
            if event in ONCE:
                run["once"][event] += time.perf_counter() - start
            control = result if result is not None else control
        return control

    CallbackHandler.call_event = call_event

    def wall_once(owner, attribute: str, key: str) -> None:  # a one-time call's wall time
        function = owner.__dict__[attribute]

        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                run["once"][key] += time.perf_counter() - start

        setattr(owner, attribute, timed)

    wall_once(Trainer, "_save_checkpoint", "Trainer._save_checkpoint")
    fetch, finalize = Trainer.get_batch_samples, Trainer._finalize_training

    def get_batch_samples(self, *args, **kwargs):  # a step starts with its batch
        run["snapshots"].append((dict(clock.total), time.perf_counter(), time.thread_time(),
                                 time.process_time()))  # fmt: skip
        return fetch(self, *args, **kwargs)

    def finalize_training(self, *args, **kwargs):  # where train_runtime is read
        run["marks"]["finalize"] = time.perf_counter()
        return finalize(self, *args, **kwargs)

    Trainer.get_batch_samples, Trainer._finalize_training = get_batch_samples, finalize_training
    init, train = SFTTrainer.__init__, Trainer.train

    def patched_init(self, *args, **kwargs):
        config, without = kwargs["args"], run["without"]
        if "optim" in without:
            config.optim = OptimizerNames.ADAMW_TORCH_FUSED
        if "tensorboard" in without:
            config.report_to = []
        if "printer" in without:
            config.disable_tqdm = False  # the emitted Trainer set it True before calling this
        if "checkpoint" in without:
            config.save_strategy = SaveStrategy.NO
        if "schedule" in without:
            config.lr_scheduler_type, config.warmup_steps = SchedulerType.LINEAR, 0
        init(self, *args, **kwargs)
        own = type(self)
        if own is not SFTTrainer:  # the emitted script's Trainer (a new class every run)
            for attribute in ("training_step", "_get_grad_norm"):
                if attribute in own.__dict__:
                    clock.wrap(own, attribute, f"mhgen Trainer.{attribute}")
                    if "nan_checks" in without:
                        plain = types.MethodType(getattr(SFTTrainer, attribute), self)
                        setattr(self, attribute, plain)
            if "_save_checkpoint" in own.__dict__:
                wall_once(own, "_save_checkpoint", "mhgen Trainer._save_checkpoint")
        removed = {"StopOnSignal"} if "signals" in without else set()
        removed |= {"StopOnNotFinite"} if "nan_checks" in without else set()
        for callback in list(self.callback_handler.callbacks):
            if type(callback).__name__ in removed:
                self.callback_handler.remove_callback(callback)

    def patched_train(self, *args, **kwargs):
        output = train(self, *args, **kwargs)
        optimizer, model = self.optimizer.optimizer, self.model
        run["facts"] |= {
            "steps_per_second": output.metrics["train_steps_per_second"],
            "train_runtime": output.metrics["train_runtime"],
            "callbacks": [type(c).__name__ for c in self.callback_handler.callbacks],
            "optimizer": f"{type(optimizer).__name__} fused={optimizer.defaults.get('fused')} "
                         f"foreach={optimizer.defaults.get('foreach')}",
            "scheduler": f"{self.args.lr_scheduler_type.value}, warmup {self.args.warmup_steps}",
            "save_strategy": self.args.save_strategy.value,
            "parameter dtypes": sorted({str(p.dtype) for p in model.parameters()}),
            "lora dropout": sorted({type(m).__name__ for n, m in model.named_modules()
                                    if n.endswith("lora_dropout.default")}),
            "checkpointing": f"{self.args.activation_checkpointing} "
                             f"{self.args.activation_checkpointing_kwargs}",
            "torch threads": torch.get_num_threads(),
            "tokens trained": self._total_train_tokens,
        }  # fmt: skip
        rows = self._total_train_tokens // self.state.global_step  # a step's tokens, but the
        rows -= self.args.per_device_train_batch_size  # last of each row: what the head scores
        run["facts"]["entropy_accuracy_ms"] = metrics_cost(model.get_output_embeddings(), rows)
        return output

    SFTTrainer.__init__, Trainer.train = patched_init, patched_train
    results = []
    for item in plan:
        run.update(without=set(item["without"]), snapshots=[], marks={}, facts={},
                   once=collections.defaultdict(float))  # fmt: skip
        sys.argv = list(item["command"])
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise
        keys = ("snapshots", "marks", "facts", "once")
        results.append({"name": item["name"], **{key: run[key] for key in keys}})
        out.write_text(json.dumps(results))
        print(f"profile_step: {item['name']} done", file=sys.stderr, flush=True)


def metrics_cost(head, rows: int) -> float:
    """CPU ms per step that TRL's per-step entropy and token accuracy add to the fused LM head's
    forward (the same code on both sides): the forward of ``rows`` tokens with and without them,
    the fastest of five tries each."""
    import torch
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction

    weight = head.weight.detach()
    hidden = torch.randn(rows, weight.shape[1])
    targets = torch.randint(0, weight.shape[0], (rows,))
    times: dict[tuple, list[float]] = collections.defaultdict(list)
    with torch.no_grad():
        for outputs in [("log_probs", "entropy", "is_top1"), ("log_probs",)] * 5:
            start = time.thread_time()
            for _ in range(5):
                ChunkedLogProbFunction.apply(hidden, weight, None, targets, 1.0, 32768, None, 1.0,
                                             outputs)  # fmt: skip
            times[outputs].append((time.thread_time() - start) / 5)
    full, bare = (min(t) for t in times.values())
    return 1000 * (full - bare)


# ---- the parent: prepare, run, print the tables


def prepare(args, root: Path) -> None:
    """Data, model, the compiled script and a float32 plain TRL script in ``root``."""
    from bench_train import BASELINE, SIZES, build
    from bench_train import prepare as prepare_bench

    settings = ['dtype="float32"', "lora_dropout=0.0", "logging_steps=1"]
    bench = argparse.Namespace(rows=args.rows, data="uniform", seq=args.seq, batch=args.batch,
                               four_bit=False, steps=args.steps, batching=["padded"],
                               set=settings)  # fmt: skip
    prepare_bench(bench, root)
    baseline = BASELINE
    for old, new in [("dtype=torch.bfloat16", "dtype=torch.float32"), ("bf16=True", "bf16=False")]:
        if old not in baseline:
            sys.exit(f"bench_train.BASELINE has no {old!r}: update profile_step.prepare")
        baseline = baseline.replace(old, new)
    (root / "baseline.py").write_text(baseline)
    SIZES["profile"] = SIZES["tiny"] | {"vocab_size": args.vocab}
    build("profile", root)


def per_step(result: dict, warmup: int) -> dict:
    """Mean CPU ms per phase over the steps after ``warmup``, with the step's totals."""
    snaps = result["snapshots"][warmup:]
    if len(snaps) < 2:
        raise ValueError(f"{len(result['snapshots'])} steps recorded, {warmup} are warm-up")
    (first, wall0, main0, proc0), (last, wall1, main1, proc1) = snaps[0], snaps[-1]
    steps = len(snaps) - 1
    ms = {name: 1000 * (last[name] - first.get(name, 0.0)) / steps for name in last}
    ms = {name: value for name, value in ms.items() if value}
    cpu = sum(value for name, value in ms.items() if not name.startswith("wall "))
    wall = sum(value for name, value in ms.items() if name.startswith("wall "))
    main, process = 1000 * (main1 - main0) / steps, 1000 * (proc1 - proc0) / steps
    step_wall = 1000 * (wall1 - wall0) / steps
    ms |= dict(zip(TOTALS, (main - cpu, process - main, process, step_wall), strict=True))
    ms["wall " + TOTALS[0]] = step_wall - wall  # the rest of the wall time
    ms["wall " + TOTALS[3]] = step_wall
    return ms


def timeline(result: dict, warmup: int) -> dict:
    """Wall ms of the pieces of train_runtime, the time train_steps_per_second divides by: from
    before on_train_begin to the end of the last step."""
    walls = [snapshot[1] for snapshot in result["snapshots"]]  # each step's start
    begin, end, n = result["marks"]["on_train_begin"], result["marks"]["finalize"], len(walls)
    once = result["once"]
    callbacks = 1000 * once.get("on_train_begin", 0.0)
    ms = {"on_train_begin (callbacks)": callbacks}
    ms["to the first batch, the rest"] = 1000 * (walls[0] - begin) - callbacks
    ms["step 1"] = 1000 * (walls[1] - walls[0])
    ms[f"steps 2-{warmup}"] = 1000 * (walls[warmup] - walls[1])
    ms[f"steps {warmup + 1}-{n - 1}"] = 1000 * (walls[n - 1] - walls[warmup])
    ms[f"step {n}"] = 1000 * (end - walls[n - 1])
    inner = 1000 * once.get("Trainer._save_checkpoint", 0.0)
    ms["of which its checkpoint: Trainer._save_checkpoint"] = inner
    ours = 1000 * once.get("mhgen Trainer._save_checkpoint", 0.0)
    ms["of which its checkpoint: mhgen's staging, rename"] = max(ours - inner, 0.0)
    ms["sum"] = 1000 * (end - begin)
    ms["train_runtime (the Trainer's)"] = 1000 * result["facts"]["train_runtime"]
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=64, help="max_seq_length (examples fill it)")
    parser.add_argument(
        "--vocab",
        type=int,
        default=512,
        help="vocab_size (bench_train's tiny: 4096; the tokenizer has 400)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's own)")
    parser.add_argument(
        "--without",
        nargs="*",
        default=[],
        choices=[*ABLATIONS, ALL, EACH],
        help="ablations: the emitted side without this difference (each: one side for each; "
        "all: one side without all of them)",
    )
    parser.add_argument("--dir", help="work here (default: a new temporary folder)")
    parser.add_argument("--report", metavar="DIR", help="only print the tables of a run in DIR")
    parser.add_argument("--child", nargs=2, metavar=("PLAN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(Path(args.child[0]).read_text()), Path(args.child[1]))
    if args.report:
        root = Path(args.report)
        return report(root, argparse.Namespace(**json.loads((root / "args.json").read_text())))

    root = Path(args.dir or tempfile.mkdtemp(prefix="mhgen-profile-")).resolve()
    prepare(args, root)
    (root / "args.json").write_text(json.dumps(vars(args)))
    plain, ours = "plain TRL", "mhgen"
    sides = {plain: (["baseline.py", "config.json"], []), ours: (["padded.py", "--overwrite"], [])}
    for name in [*ABLATIONS] if EACH in args.without else args.without:
        if name not in (ALL, EACH):
            sides[f"{ours} without {name}"] = (["padded.py", "--overwrite"], [name])
    if ALL in args.without:
        sides[f"{ours} without {ALL}"] = (["padded.py", "--overwrite"], [*ABLATIONS])
    order = [plain, ours]  # the warm-up round, not counted
    for i in range(args.rounds):
        order += list(sides) if i % 2 == 0 else list(reversed(sides))
    plan = [{"name": name, "command": sides[name][0], "without": sides[name][1]} for name in order]
    (root / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.threads:
        env |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    print(f"{len(plan)} runs in {root} (log: child.log)", flush=True)
    with open(root / "child.log", "w") as log:
        child_args = ["--child", str(root / "plan.json"), str(root / "results.json")]
        proc = subprocess.run([sys.executable, __file__, *child_args], cwd=root, env=env,
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"the child failed: {(root / 'child.log').read_text()[-3000:]}")
    report(root, args)
    print(f"\n(work folder: {root})")


def report(root: Path, args) -> None:
    """The tables, from root/results.json."""
    results: dict[str, list[dict]] = {}
    for result in json.loads((root / "results.json").read_text())[2:]:  # after the warm-up
        result |= {"ms": per_step(result, args.warmup), "timeline": timeline(result, args.warmup)}
        results.setdefault(result["name"], []).append(result)
    plain, ours = "plain TRL", "mhgen"

    def median(name: str, table: str, key: str) -> float:
        return statistics.median(r[table].get(key, 0.0) for r in results[name])

    def fact(name: str, key: str) -> float:
        return statistics.median(r["facts"][key] for r in results[name])

    threads = results[ours][0]["facts"]["torch threads"]
    print(f"\ntiny Qwen3 (vocabulary {args.vocab}), float32, batch {args.batch}, {args.seq} tokens "
          f"an example, {args.steps} steps, torch threads {threads}; ms per step of each phase "
          f"without the phases in it, main-thread CPU time and wall time, mean of the steps after "
          f"{args.warmup}, median of {args.rounds} rounds")  # fmt: skip
    print(f"\n| phase | CPU: {plain} | {ours} | difference | wall: {plain} | {ours} | difference |"
          "\n|---|---|---|---|---|---|---|")  # fmt: skip
    phases = {key for name in (plain, ours) for r in results[name] for key in r["ms"]}
    phases = {key for key in phases if not key.startswith("wall ")}
    for key in [*sorted(phases - set(TOTALS)), *TOTALS]:
        a, b = median(plain, "ms", key), median(ours, "ms", key)
        wa, wb = median(plain, "ms", "wall " + key), median(ours, "ms", "wall " + key)
        walls = f"{wa:.2f} | {wb:.2f} | {wb - wa:+.2f}" if key not in TOTALS[1:3] else "| |"
        print(f"| {key} | {a:.2f} | {b:.2f} | {b - a:+.2f} | {walls} |")
        if key.startswith("forward: LM head"):
            a, b = fact(plain, "entropy_accuracy_ms"), fact(ours, "entropy_accuracy_ms")
            print(f"| of which TRL's entropy + token accuracy | {a:.2f} | {b:.2f} | {b - a:+.2f} "
                  "| | | |")  # fmt: skip

    print("\ntrain_runtime in pieces, wall ms (train_steps_per_second = steps / train_runtime)")
    print(f"| piece | {plain} | {ours} | difference |\n|---|---|---|---|")
    for key in results[ours][0]["timeline"]:
        a, b = median(plain, "timeline", key), median(ours, "timeline", key)
        print(f"| {key} | {a:.0f} | {b:.0f} | {b - a:+.0f} |")

    print("\nthe setups (first run of each side):\n| | plain TRL | mhgen |\n|---|---|---|")
    for key, value in results[ours][0]["facts"].items():
        if key not in ("steps_per_second", "train_runtime", "entropy_accuracy_ms"):
            print(f"| {key} | {results[plain][0]['facts'][key]} | {value} |")

    # CPU time with one torch thread; wall time with more (the other threads spin between ops)
    kind, step, prefix = "CPU", "step, CPU of all threads", ""
    if args.threads != 1:
        kind, step, prefix = "wall", "step, wall", "wall "
    base, base_rate = median(plain, "ms", step), fact(plain, SPS)

    def outside(name: str) -> float:
        """The ms of a step outside the model's forward and backward, per ms of the model's in
        the same run: a slower moment of the machine slows both, the ratio stays."""
        ratios = []
        for r in results[name]:
            model = sum(r["ms"].get(prefix + key, 0.0) for key in MODEL)
            ratios.append((r["ms"][step] - model) / model)
        return statistics.median(ratios)

    model = base / (1 + outside(plain))
    print("\nsteps/s: the Trainer's train_steps_per_second (wall: the first steps and the last "
          f"checkpoint in it) and 1000 / {kind} ms of a steady step; then the {kind} ms of a step "
          "outside the model's forward and backward (which run the same aten ops on the same "
          "shapes on every side, and hold most of the noise) scaled to the plain side's forward "
          f"and backward ({model:.1f} ms), and the steps/s that gives. Ablations: the emitted "
          "side without one difference\n| side | without | exact | steps/s (Trainer's) | vs plain "
          f"| steady steps/s ({kind}) | vs plain | outside the model, ms | steps/s, plain's model "
          "| vs plain |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for name in results:
        what, exact = "", ""
        if name.startswith(f"{ours} without "):
            key = name.removeprefix(f"{ours} without ")
            what, exact = ABLATIONS.get(key, ("all of these", False))
            exact = "yes" if exact else "no"
        ms, rate, rest = median(name, "ms", step), fact(name, SPS), outside(name) * model
        print(f"| {name} | {what} | {exact} | {rate:.2f} | {rate / base_rate:.2f}x "
              f"| {1000 / ms:.2f} | {base / ms:.2f}x | {rest:.2f} | {1000 / (model + rest):.2f} "
              f"| {base / (model + rest):.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
