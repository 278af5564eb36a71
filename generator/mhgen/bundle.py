"""``mhgen bundle CONFIG -o DIR``: everything a colleague or a rented GPU box needs, in one folder.

DIR gets the script (its PEP 723 block lets ``uv run`` install its own dependencies), the config,
a requirements.txt pinned to the versions the test suite ran with, a SLURM batch script for
several machines, and a README with the exact commands. Nothing in DIR needs mhgen. An existing
file with other content is never replaced without ``--force``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from .diagnostics import WriteError
from .load import ACTIVE
from .pins import TESTED
from .pipeline import Compiled
from .resolve import REPORTERS
from .write import write

README = """\
# {script}

Fine-tunes `{base_model}` ({chat_format} format, {mode}), compiled by mhgen {version} from
`{config}` (canonical sha256 {sha}). The script stands alone: it needs no mhgen.

{data}, then:

```bash
# check the data and the training text; loads no model
uv run {script} --dry-run              # uv installs the script's own dependencies (PEP 723)
# or, with pip and the versions the script was tested with:
python -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt
python {script} --dry-run
python {script}                        # train; the adapter lands in {output_dir}
{multi}python {script} --resume               # after an interruption (SIGTERM saves a checkpoint)
python {script} --sample 4             # the adapter's replies to 4 held-out prompts
```

On several machines with SLURM, from this folder on storage every machine sees (the output
folder must be on it; the tokenized data goes to each machine's own /tmp):

```bash
sbatch --nodes 2 slurm.sbatch          # {gpus} on each machine; see its first lines
```

On a CUDA machine, install torch for its CUDA version first if the pinned wheel does not fit it.
"""


SBATCH = """\
#!/bin/bash
# {script} on several machines, from this folder on storage every machine sees:
#     sbatch --nodes N slurm.sbatch [SCRIPT OPTIONS]     (2 machines when --nodes is not given)
# One torchrun per machine starts {started};
# they meet at the first machine (torchrun's c10d rendezvous). The output folder must be on the
# shared storage; the tokenized data is made on each machine's own disk. The script resumes the
# run in the output folder when there is one: a requeued or repeated job continues from the
# newest checkpoint.
#SBATCH --job-name={name}
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={processes}
#SBATCH --output=%x-%j.log
set -euo pipefail
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi  # the README's install
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun torchrun --nnodes "$SLURM_NNODES" --nproc-per-node {processes} --rdzv-backend c10d \\
    --rdzv-endpoint "$head:${{MHGEN_RDZV_PORT:-29500}}" --rdzv-id "$SLURM_JOB_ID" \\
    {script} --resume --data-cache "${{TMPDIR:-/tmp}}/mhgen-data-cache" "$@"
"""


def where_data_goes(path: str) -> str:
    """The README's line on the training data, for what dataset_path names (the script decides
    the same way, on the machine it runs on)."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in (".json", ".parquet", ".csv"):
        return f"Put the training data at `{path}` (one conversation per row)"
    if suffix != ".jsonl" and re.fullmatch(r"[\w.-]+/[\w.-]+", path):
        return (
            f"The training data is `{path}`: a dataset folder of that name, or else the Hugging "
            "Face Hub dataset of that id (downloaded into the datasets cache on the first run)"
        )
    return f"Put the training data at `{path}` (JSONL, one conversation per line)"


def bundle(compiled: Compiled, out: Path, force: bool = False) -> list[Path]:
    plan, values = compiled.plan, compiled.plan.values
    names = ["torch", "transformers", "trl", "peft", "accelerate", "datasets"]
    if values["load_in_4bit"]:
        names.append("bitsandbytes")
    if values["report_to"] == "tensorboard":  # where the curves go
        names.append("tensorboard")
    requirements = "".join(f"{name}=={TESTED[name]}\n" for name in sorted(names))
    if values["distributed_strategy"].startswith("deepspeed"):
        requirements += "deepspeed>=0.16  # not pinned: the test suite does not run DeepSpeed\n"
    if values["report_to"] not in ("none", "tensorboard"):
        reporter = REPORTERS[values["report_to"]]
        requirements += f"{reporter}  # not pinned: the tests log to tensorboard or none\n"
    processes = values["num_processes"]
    multi = (
        f"torchrun --nproc-per-node {processes} {plan.script_name}   "
        f"# {processes} GPUs, {values['distributed_strategy']}\n"
        if processes > 1
        else ""
    )
    # under its own name, so that compiling it there gives this same script
    source = Path(compiled.source.file)
    name = compiled.source.name
    config_name = source.name if name in ("", ACTIVE) else f"{ACTIVE}-{name}{source.suffix}"
    files = {
        plan.script_name: compiled.text,
        config_name: Path(compiled.source.file).read_text(encoding="utf-8"),
        "requirements.txt": requirements,
        "slurm.sbatch": SBATCH.format(
            script=plan.script_name,
            name=plan.script_name.removesuffix(".py"),
            processes=processes,
            started=(
                f"{processes} processes, one per GPU ({values['distributed_strategy']})"
                if processes > 1
                else "one process on one GPU (DDP across the machines)"
            ),
        ),
        "README.md": README.format(
            script=plan.script_name,
            base_model=values["base_model"],
            chat_format=plan.chat_format,
            mode="4-bit QLoRA" if values["load_in_4bit"] else "LoRA",
            version=plan.mhgen_version,
            config=config_name,
            sha=plan.config_sha256[:12],
            data=where_data_goes(values["dataset_path"]),
            output_dir=values["output_dir"],
            multi=multi,
            gpus=f"{processes} GPUs" if processes > 1 else "one GPU",
        ),
    }
    for name, text in files.items():  # check everything before writing anything
        path = out / name
        mine = name == plan.script_name  # the script has write()'s own hand-edit protection
        if not mine and not force and path.exists() and path.read_text(encoding="utf-8") != text:
            raise WriteError(f"{path}: exists with other content; pass --force to replace it")
    written = []
    for name, text in files.items():
        path = out / name
        if name == plan.script_name:
            write(path, text, force=force)
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
