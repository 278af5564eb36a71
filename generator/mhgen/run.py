"""Run an emitted script as a child process: output streamed, exit code passed through.

Ctrl-C reaches the child through the terminal's process group; mhgen then waits for the child to
save and exit rather than dying first and leaving it orphaned.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machines:
    """Where the script runs beyond one process: ``processes`` on each of ``nodes`` machines,
    which meet at ``endpoint`` (torchrun's c10d rendezvous, named ``run_id``); ``node_rank`` 0
    is the machine at the endpoint (None: torchrun finds out); torchrun starts every process
    again ``max_restarts`` times after a failure."""

    processes: int = 1
    nodes: int = 1
    endpoint: str | None = None
    run_id: str = "mhgen"
    node_rank: int | None = None
    max_restarts: int = 0


def launcher(machines: Machines) -> list[str]:
    """python, or torchrun (mhgen.torchrun: its failures in one line) with the processes,
    machines and restarts of ``machines``."""
    m = machines
    if m.processes == 1 and m.nodes == 1 and not m.max_restarts:
        return [sys.executable]
    line = [sys.executable, "-m", "mhgen.torchrun", "--nproc-per-node", str(m.processes)]
    if m.nodes > 1:
        line += ["--nnodes", str(m.nodes), "--rdzv-backend", "c10d"]
        line += ["--rdzv-endpoint", m.endpoint, "--rdzv-id", m.run_id]
        if m.node_rank is not None:  # c10d numbers the machines itself: this says who hosts it
            line += ["--rdzv-conf", f"is_host={str(m.node_rank == 0).lower()}"]
    if m.max_restarts:
        line += ["--max-restarts", str(m.max_restarts)]
    return line


def run_script(script: Path, args: list[str], machines: Machines = Machines()) -> int:
    """The script under launcher(machines), with ``args``."""
    command = [*launcher(machines), str(script), *args]
    print("mhgen: running " + " ".join(command), file=sys.stderr, flush=True)
    child = subprocess.Popen(command)
    previous = signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue  # the child got the same SIGINT; wait for it to finish cleanly
    finally:
        signal.signal(signal.SIGTERM, previous)
