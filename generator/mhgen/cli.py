"""mhgen's command line: a thin shell over the pipeline. Exit 0 ok, 1 invalid config or stale
output, 2 usage error. A user's mistake prints diagnostics, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import shutil
import sys
from pathlib import Path

from . import __version__
from .diagnostics import ConfigError, MhgenError, UsageError, WriteError
from .load import ACTIVE, CONFIG_SUFFIXES, config_name
from .pipeline import Compiled, check_config, compile_config
from .write import state_of, write


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra: list[str] = []
    if "--" in argv:  # everything after -- goes to the emitted script
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra = unknown + extra  # mhgen run CONFIG --dry-run: the script's own options pass on
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (mhgen diff ... | head): nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the final flush finds somewhere to write
        return 0
    except ConfigError as exc:
        _print_diagnostics(exc.diagnostics)
        return exc.exit_code
    except MhgenError as exc:
        print(f"mhgen: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mhgen", description="Compile a training config into a standalone fine-tuning script."
    )
    parser.add_argument("--version", action="version", version=f"mhgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", help="config(s) -> emitted/train_<model>.py")
    p.add_argument("configs", nargs="+", metavar="CONFIG")
    p.add_argument("-o", "--output-dir", default="emitted", help="default: emitted")
    p.add_argument("--force", action="store_true", help="replace a hand-edited script")
    p.add_argument("--run", action="store_true", help="run the script (one config); args after --")
    _machine_options(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser(
        "run", help="compile one config and run its script, passing it the options mhgen has not"
    )
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("-o", "--output-dir", default="emitted", help="default: emitted")
    p.add_argument("--force", action="store_true", help="replace a hand-edited script")
    _machine_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bundle", help="script, config, pinned requirements and README in DIR")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("-o", "--output-dir", required=True, metavar="DIR")
    p.add_argument("--force", action="store_true", help="replace files with other content")
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("smoke", help="train the config's script on a tiny local model (CPU)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps (default 4)")
    p.add_argument("--keep", metavar="DIR", help="build and keep everything in DIR")
    p.set_defaults(func=cmd_smoke)

    p = sub.add_parser("validate", help="check config(s) and print every problem")
    p.add_argument("configs", nargs="+", metavar="CONFIG")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("check", help="exit 1 with a diff if emitted/ is stale w.r.t. etc/")
    p.add_argument("--etc", default="etc", help="config folder (default: etc)")
    p.add_argument("--emitted", default="emitted", help="script folder (default: emitted)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("diff", help="what differs between two configs, then between their scripts")
    p.add_argument("a", metavar="CONFIG_A")
    p.add_argument("b", metavar="CONFIG_B")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("plan", help="estimated peak GPU memory, and which GPUs the run fits")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--gpu-memory", type=_gigabytes, metavar="GB", help="judge this size only")
    p.add_argument(
        "--tokens-per-example",
        type=_positive_int,
        metavar="N",
        help="the data's mean example length (padding_free memory follows the real tokens)",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("formats", help="each chat format with a rendered example")
    p.set_defaults(func=cmd_formats)

    p = sub.add_parser("explain", help="how a config's family, format and defaults were chosen")
    p.add_argument("config", metavar="CONFIG")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("schema", help="print the config's JSON Schema")
    p.add_argument("--markdown", action="store_true", help="as the field table of etc/README.md")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("use", help="make etc/training-NAME.json the active etc/training.json")
    p.add_argument("name", help="for example qwen3-8b")
    p.add_argument("--etc", default="etc")
    p.add_argument("--emitted", default="emitted", help="where a discarded config's script is")
    p.add_argument("--force", action="store_true", help="replace an unsaved etc/training.json")
    p.set_defaults(func=cmd_use)

    p = sub.add_parser("new", help="start etc/training-NAME.json from an existing config")
    p.add_argument("name", help="for example my-model")
    p.add_argument("--from", dest="base", default="training", help="config name or path")
    p.add_argument("--etc", default="etc")
    p.set_defaults(func=cmd_new)
    return parser


# --- commands


def cmd_compile(args) -> int:
    if args.run and len(args.configs) != 1:
        raise UsageError("--run takes exactly one config")
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: a file, not a folder (-o names the folder the scripts go in)")
    compiled = _compile_all(args.configs)
    machines = _machines(args, compiled[0].plan)
    paths = []
    for c in compiled:
        path = out / c.plan.script_name
        if c.source.name == ACTIVE:
            print(
                f"mhgen: note: {c.source.file} matches no {ACTIVE}-*.json beside it, so it is "
                f"compiled as the config {ACTIVE!r}; to keep it under a name of its own: "
                f"mhgen new NAME --from {c.source.file}",
                file=sys.stderr,
            )
        status = write(path, c.text, force=args.force)
        print(path)
        if status != "create":
            print(f"mhgen: {path}: {status}", file=sys.stderr)
        paths.append(path)
    if args.run:
        from .run import run_script

        return run_script(paths[0], args.extra, machines)
    return 0


def cmd_run(args) -> int:
    args.configs, args.run = [args.config], True
    return cmd_compile(args)


def cmd_bundle(args) -> int:
    from .bundle import bundle

    (compiled,) = _compile_all([args.config])
    for path in bundle(compiled, Path(args.output_dir), force=args.force):
        print(path)
    return 0


def cmd_smoke(args) -> int:
    from .smoke import smoke

    (config,) = _existing([args.config])
    return smoke(config, steps=args.steps, keep=Path(args.keep) if args.keep else None)


def cmd_validate(args) -> int:
    worst = 0
    for path in _existing(args.configs):
        try:
            _, warnings = check_config(path)
        except ConfigError as exc:
            _print_diagnostics(exc.diagnostics)
            worst = 1
            continue
        _print_diagnostics(warnings)
        print(f"{path}: ok" + (f" ({len(warnings)} warnings)" if warnings else ""))
    return worst


def cmd_check(args) -> int:
    etc, emitted = Path(args.etc), Path(args.emitted)
    configs = _checked_configs(etc)
    if not configs:
        raise UsageError(f"{etc}: no training-*.json configs to check")
    expected = {emitted / c.plan.script_name: c for c in _compile_all(configs, quiet=True)}
    fixes = []
    for path, c in expected.items():
        actual = path.read_text(encoding="utf-8") if path.is_file() else ""
        if actual == c.text:
            continue
        if not path.is_file():
            print(f"{path}: missing (compile {c.source.file})")
            fixes.append(f"mhgen compile {c.source.file}")
        elif state_of(actual) != "sealed":
            print(
                f"{path}: edited by hand, and stale: move the edit into {c.source.file}, then "
                "compile it with --force"
            )
            fixes.append(f"mhgen compile --force {c.source.file}")
        else:
            print(f"{path}: stale (compile {c.source.file})")
            fixes.append(f"mhgen compile {c.source.file}")
        if path.is_file():
            diff = difflib.unified_diff(
                actual.splitlines(keepends=True),
                c.text.splitlines(keepends=True),
                str(path),
                f"{path} (from {c.source.file})",
                n=1,
            )
            sys.stdout.writelines(list(diff)[:60])
    for path in sorted(emitted.glob("train_*.py")):
        if path not in expected:
            print(f"{path}: no config in {etc}/ compiles to it; delete it or restore its config")
            fixes.append(f"rm {path}")
    if fixes:
        print(f"mhgen check: {len(fixes)} file(s) out of date; to fix: " + "; ".join(fixes))
        return 1
    print(f"mhgen check: {len(expected)} scripts in {emitted}/ match {etc}/")
    return 0


def _checked_configs(etc: Path) -> list[Path]:
    """The named configs, and the active one when it is not a copy of one of them."""
    configs = sorted(p for p in etc.glob(ACTIVE + "-*") if p.suffix in CONFIG_SUFFIXES)
    for active in _active_configs(etc):
        with_data = _data_or_none(active)
        if with_data is not None and config_name(active, with_data) == ACTIVE:
            configs.append(active)  # an edited copy: its script is train_training.py
    return configs


def _active_configs(etc: Path) -> list[Path]:
    return [
        etc / (ACTIVE + suffix) for suffix in CONFIG_SUFFIXES if (etc / (ACTIVE + suffix)).is_file()
    ]


def _data_or_none(path: Path):
    from .load import load_file

    try:
        return load_file(path).data
    except ConfigError:
        return {}  # invalid: compiling it reports why


def cmd_diff(args) -> int:
    """0: the same script, 1: they differ, 2: trouble (as diff(1))."""
    from .compare import diff_text

    try:
        a, b = _compile_all([args.a, args.b], quiet=True, allow_same_name=True)
    except ConfigError as exc:
        _print_diagnostics(exc.diagnostics)
        return 2
    except MhgenError as exc:
        print(f"mhgen: {exc}", file=sys.stderr)
        return 2
    text, differ = diff_text(a, b)
    sys.stdout.write(text)
    return 1 if differ else 0


def cmd_plan(args) -> int:
    from .vram import report

    (compiled,) = _compile_all([args.config], quiet=True)
    model = compiled.source.model
    config = model.config if model is not None else None
    values = dict(compiled.plan.values)
    text = report(values, args.gpu_memory, config, args.tokens_per_example)
    sys.stdout.write(text)
    return 1 if text.startswith("no shape known") else 0  # no estimate: not a success


def cmd_formats(args) -> int:
    from .explain import formats_text

    sys.stdout.write(formats_text())
    return 0


def cmd_explain(args) -> int:
    from .explain import explain_text

    (compiled,) = _compile_all([args.config])
    sys.stdout.write(explain_text(compiled))
    return 0


def cmd_schema(args) -> int:
    from .schema import load_schema, schema_text

    if args.markdown:
        from .schema_doc import markdown_table

        sys.stdout.write(markdown_table(load_schema()))
    else:
        sys.stdout.write(schema_text())
    return 0


def cmd_use(args) -> int:
    etc = Path(args.etc)
    source = _named_config(etc, args.name)
    check_config(source)
    discarded = []  # the active config's scripts that no config compiles to once it is replaced
    for active in _active_configs(etc):
        current = active.read_bytes()
        saved = [p for p in etc.glob(ACTIVE + "-*") if p.is_file() and p.read_bytes() == current]
        if saved or active.read_bytes() == source.read_bytes():
            continue
        name = config_name(active, _data_or_none(active))
        if name != ACTIVE:
            continue  # the same settings as a saved config, written differently: nothing is lost
        if not args.force:
            raise WriteError(
                f"{active} differs from every {etc}/training-*.json; save it first "
                f"(mhgen new NAME --from {active}) or pass --force to discard it"
            )
        script = Path(args.emitted) / f"train_{ACTIVE}.py"
        if script.is_file() and state_of(script.read_text(encoding="utf-8")) == "sealed":
            discarded.append(script)
    target = etc / (ACTIVE + source.suffix)
    for active in _active_configs(etc):
        if active != target:
            active.unlink()  # one active config, whatever its format
    shutil.copyfile(source, target)
    for script in discarded:
        script.unlink()
        print(f"removed {script}, the script of the discarded {ACTIVE} config")
    print(f"{target} is now {source.name}; next: mhgen compile {target}")
    return 0


def cmd_new(args) -> int:
    etc = Path(args.etc)
    looks_like_a_path = (
        "/" in args.base or os.sep in args.base or args.base.endswith(CONFIG_SUFFIXES)
    )
    if Path(args.base).is_file():
        base = Path(args.base)
    elif looks_like_a_path:
        raise UsageError(f"{args.base}: no such config file")
    else:
        base = _named_config(etc, args.base)
    name = args.name.removeprefix("training-")
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name) or name.startswith("."):
        raise UsageError(f"{args.name!r}: use letters, digits, '-', '_' and '.' only")
    target = etc / f"training-{name}{base.suffix}"
    if target.exists():
        raise WriteError(f"{target} already exists; choose another name, or edit that file")
    check_config(base)
    shutil.copyfile(base, target)
    print(target)
    print(
        f"next: edit base_model, chat_template and notes in {target}, then "
        f"mhgen validate {target} && mhgen compile {target}",
        file=sys.stderr,
    )
    return 0


# --- helpers


def _machine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "several machines (with --run)",
        "Each machine runs the same command; torchrun's c10d rendezvous numbers them. The "
        "output_dir must be on storage all of them see.",
    )
    g.add_argument("--nnodes", type=_positive_int, default=1, metavar="N", help="machines")
    g.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="where they meet: the first one")
    g.add_argument(
        "--node-rank", type=int, metavar="R", help="0 on the machine at HOST (it hosts the meeting)"
    )
    g.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        metavar="K",
        help="torchrun starts the run again up to K times after a failure; it resumes",
    )


def _machines(args, plan):
    """What --nnodes, --rdzv-endpoint, --node-rank and --max-restarts ask for, checked."""
    from .run import Machines

    if not args.run and (args.nnodes > 1 or args.rdzv_endpoint or args.max_restarts):
        raise UsageError("--nnodes, --rdzv-endpoint and --max-restarts go with --run")
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise UsageError(
            f"--nnodes {args.nnodes} needs --rdzv-endpoint HOST:PORT: the first machine's address "
            "and a free port, the same on every machine"
        )
    if args.nnodes == 1 and (args.rdzv_endpoint or args.node_rank is not None):
        raise UsageError("--rdzv-endpoint and --node-rank go with --nnodes N (2 or more)")
    if args.max_restarts < 0:
        raise UsageError(f"--max-restarts {args.max_restarts}: 0 or more")
    return Machines(
        processes=plan.values["num_processes"],
        nodes=args.nnodes,
        endpoint=args.rdzv_endpoint,
        run_id=f"mhgen-{plan.config_sha256[:12]}",
        node_rank=args.node_rank,
        max_restarts=args.max_restarts,
    )


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return int(text)


def _gigabytes(text: str) -> float:
    """A GPU's memory in GB for --gpu-memory: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GB") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a GPU's memory is a number of GB above 0")
    return value


def _existing(paths) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if not p.is_file():
            raise UsageError(f"{p}: no such config file")
        out.append(p)
    return out


def _named_config(etc: Path, name: str) -> Path:
    stem = "training" if name in ("training", "") else f"training-{name.removeprefix('training-')}"
    for suffix in CONFIG_SUFFIXES:
        if (etc / (stem + suffix)).is_file():
            return etc / (stem + suffix)
    names = sorted(p.stem.removeprefix("training-") for p in etc.glob("training-*"))
    raise UsageError(f"no {etc}/{stem}.json; available: {', '.join(names) or 'none'}")


def _compile_all(paths, quiet: bool = False, allow_same_name: bool = False) -> list[Compiled]:
    """Compile every config, reporting all their diagnostics before failing."""
    compiled, problems = [], []
    for path in _existing(paths):
        try:
            c = compile_config(path)
        except ConfigError as exc:
            problems += exc.diagnostics
            continue
        if not quiet:
            _print_diagnostics(c.warnings)
        compiled.append(c)
    if problems:
        raise ConfigError(problems)
    if not allow_same_name:
        by_name: dict[str, Compiled] = {}
        for c in compiled:
            other = by_name.setdefault(c.plan.script_name, c)
            if other is not c and other.text != c.text:
                raise UsageError(
                    f"{other.source.file} and {c.source.file} both compile to "
                    f"{c.plan.script_name} with different settings; compile them separately"
                )
    return compiled


def _print_diagnostics(diagnostics) -> None:
    for d in diagnostics:
        print(d, file=sys.stderr)
