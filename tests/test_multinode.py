"""Several machines, simulated on this one: two torchrun agents (`mhgen run --nnodes 2`), one
process each, meeting at a local c10d rendezvous and training over gloo. What a cluster differs
in is where the folders are: the output folder is one both "machines" see, the token cache each
one's own or shared. The adapter is the one a single machine with two processes trains; a
machine killed whole mid-run leaves the other stopping at once with a clear line and a whole
checkpoint, from which --resume on both finishes the same adapter."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import require, write_config
from runs import ENV, TESTS, assert_same_adapter, steps_of, tiny_model_and_data

require("trl")
pytestmark = pytest.mark.xdist_group("torchrun")  # one torchrun at a time on this machine


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny Qwen3 and its data, the two-machine config (two.json), and the run to match: one
    machine, two processes, the same settings (one.json, output in one/)."""
    root = tmp_path_factory.mktemp("multinode")
    model, data = tiny_model_and_data(root)
    config = {
        "base_model": str(model), "chat_template": "auto", "system_prompt": "", "dataset_path": str(data),
        "output_dir": "out", "max_seq_length": 64, "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.0,
        "learning_rate": 0.005, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
        "logging_steps": 1, "save_steps": 2, "max_steps": 6, "load_in_4bit": False,
        "dtype": "float32", "report_to": "none", "distributed_strategy": "ddp",
    }  # fmt: skip
    write_config(root, config, "two.json")
    write_config(root, {**config, "num_processes": 2, "output_dir": "one"}, "one.json")
    one = subprocess.run(
        [sys.executable, "-m", "mhgen", "run", "one.json"],
        cwd=root, capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine(root: Path, rank: int, port: int, *script_args: str, fault: str = "", log=""):
    """One "machine": `mhgen run two.json --nnodes 2 ...` (rank 0 hosts the rendezvous), its
    output in LOGmachine-RANK.log; with ``fault``, torchrun on mhgen's own launch line runs the
    script under inject_fault.py."""
    command = [sys.executable, "-m", "mhgen", "run", "two.json", "--nnodes", "2"]
    command += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--node-rank", str(rank), "--"]
    env = dict(ENV)
    if fault:
        from mhgen.pipeline import compile_config
        from mhgen.run import Machines, launcher

        run_id = f"mhgen-{compile_config(root / 'two.json').plan.config_sha256[:12]}"  # as mhgen's
        machines = Machines(nodes=2, endpoint=f"127.0.0.1:{port}", run_id=run_id, node_rank=rank)
        command = [*launcher(machines), str(TESTS / "inject_fault.py"), "emitted/train_two.py"]
        env["INJECT_FAULT"] = fault
    out = (root / f"{log}machine-{rank}.log").open("w")
    return subprocess.Popen(
        [*command, *script_args], cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env,
        start_new_session=True,
    )  # fmt: skip


def both(root: Path, *script_args: str, caches=("cache", "cache"), log="") -> list[str]:
    """Both machines run to the end; their outputs, first machine first."""
    port = free_port()
    runs = [
        machine(root, rank, port, "--data-cache", caches[rank], *script_args, log=log)
        for rank in (0, 1)
    ]
    codes = [run.wait(timeout=300) for run in runs]
    said = [(root / f"{log}machine-{rank}.log").read_text() for rank in (0, 1)]
    assert codes == [0, 0], said[0][-3000:] + said[1][-3000:]
    return said


def test_two_machines_with_a_shared_cache_tokenize_once_and_train_one_machines_adapter(root):
    said = both(root, "--output-dir", "shared", log="shared-")
    both_said = said[0] + said[1]
    assert both_said.count(", checked in ") == 1  # by one process of the two, for both
    assert both_said.count("tokenized 16 rows") == 1
    assert both_said.count("adapter saved to shared") == 1  # the main process, on one machine
    assert "x 2 processes = 4 sequences per optimizer step" in both_said
    assert_same_adapter(root / "shared", root / "one")
    assert len(list((root / "cache" / "tokens").iterdir())) == 1
    assert not list((root / "cache").rglob("*.lock"))  # released


def test_a_machine_killed_whole_stops_the_other_and_resume_finishes_its_adapter(root):
    """Each machine with a token cache of its own; the second hangs once checkpoint-2 is saved
    and is then killed whole (its torchrun agent and its process), as a machine that fails."""
    port, stalled = free_port(), root / "stalled"
    first = machine(root, 0, port, "--data-cache", "cache-0", "--output-dir", "killed")
    second = machine(
        root, 1, port, "--data-cache", "cache-1", "--output-dir", "killed",
        fault=f"stall:1:{stalled}",
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not stalled.exists():
        assert time.monotonic() < deadline and first.poll() is None and second.poll() is None
        time.sleep(0.2)
    import psutil

    agent = psutil.Process(second.pid)
    for process in [agent, *agent.children(recursive=True)]:
        process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    code = first.wait(timeout=120)
    assert time.monotonic() - killed < 60  # at once, not after a timeout
    said = (root / "machine-0.log").read_text()
    assert code != 0
    assert "lost contact with the run (Connection " in said, said[-3000:]
    assert "checkpoint-2 is the newest checkpoint" in said
    assert "the same command with --resume, on every machine, continues from it" in said
    # then torchrun's agent, in one line too
    assert re.search(r"mhgen: torchrun: process \d stopped \(status 5\); see above\n$", said)
    assert "Traceback" not in said
    assert steps_of(root / "killed") == [2]
    # each machine made its own cache
    for cache in ("cache-0", "cache-1"):
        assert len(list((root / cache / "tokens").iterdir())) == 1
    caches = ("cache-0", "cache-1")
    said = both(root, "--resume", "--output-dir", "killed", caches=caches, log="resumed-")
    assert "resuming from checkpoint-2: step 2" in said[0] + said[1]
    assert (said[0] + said[1]).count("tokenized 16 rows") == 0  # each machine's cache is kept
    assert_same_adapter(root / "killed", root / "one")


def test_an_output_folder_a_machine_does_not_see_stops_every_machine(root):
    port = free_port()
    runs = [
        machine(root, rank, port, "--output-dir", f"mine-{rank}", log="mine-") for rank in (0, 1)
    ]
    codes = [run.wait(timeout=300) for run in runs]
    said = [(root / f"mine-machine-{rank}.log").read_text() for rank in (0, 1)]
    assert codes[0] != 0 and codes[1] != 0
    assert "1 of 2 processes do not see the files the main process writes there" in "".join(said)
    assert not [p for rank in (0, 1) for p in (root / f"mine-{rank}").glob("checkpoint-*")]


def test_the_bundles_slurm_script_trains_on_two_machines(root, tmp_path):
    """slurm.sbatch as SLURM runs it, with srun and scontrol of a pretend cluster of two
    machines that are both this one: srun starts its command once per machine."""
    bundled = subprocess.run(
        [sys.executable, "-m", "mhgen", "bundle", str(root / "two.json"), "-o", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bundled.returncode == 0, bundled.stderr
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text(
        '#!/bin/bash\nfor i in $(seq "$SLURM_NNODES"); do "$@" & done\n'
        "for job in $(jobs -p); do wait $job || exit 1; done\n"
    )
    (fake / "scontrol").write_text("#!/bin/bash\necho 127.0.0.1\n")  # show hostnames
    for tool in ("srun", "scontrol"):
        (fake / tool).chmod(0o755)
    env = {
        **ENV, "PATH": f"{fake}:{Path(sys.executable).parent}:{ENV['PATH']}",
        "SLURM_NNODES": "2", "SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "node[1-2]",
        "MHGEN_RDZV_PORT": str(free_port()), "TMPDIR": str(tmp_path / "node-tmp"),
    }  # fmt: skip
    job = subprocess.run(
        ["bash", "slurm.sbatch", "--max-steps", "2"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert job.stdout.count("adapter saved to out (this run trained steps 1 to 2)") == 1
    assert "x 2 processes = 4 sequences per optimizer step" in job.stdout
    assert (tmp_path / "node-tmp" / "mhgen-data-cache" / "tokens").is_dir()


def test_the_launch_line_for_several_machines():
    from mhgen.run import Machines, launcher

    python = sys.executable
    assert launcher(Machines()) == [python]
    assert launcher(Machines(processes=4)) == [
        python,
        "-m",
        "mhgen.torchrun",
        "--nproc-per-node",
        "4",
    ]
    assert launcher(Machines(nodes=2, endpoint="h:29500", run_id="mhgen-abc", node_rank=1, max_restarts=3)) == [
        python, "-m", "mhgen.torchrun", "--nproc-per-node", "1", "--nnodes", "2", "--rdzv-backend",
        "c10d", "--rdzv-endpoint", "h:29500", "--rdzv-id", "mhgen-abc", "--rdzv-conf", "is_host=false",
        "--max-restarts", "3",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["run", "c.json", "--nnodes", "2"], "mhgen: --nnodes 2 needs --rdzv-endpoint HOST:PORT"),
        (["run", "c.json", "--rdzv-endpoint", "h:1"], "mhgen: --rdzv-endpoint and --node-rank go with --nnodes N"),
        (["compile", "c.json", "--max-restarts", "2"], "mhgen: --nnodes, --rdzv-endpoint and --max-restarts go with --run"),
    ],
)  # fmt: skip
def test_machine_options_that_do_not_fit_are_refused_before_anything_is_written(
    tmp_path, args, said
):
    from conftest import MINIMAL

    write_config(tmp_path, MINIMAL, "c.json")
    proc = subprocess.run(
        [sys.executable, "-m", "mhgen", *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith(said), proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "emitted").exists()
