"""Run an emitted script as a child process: output streamed, exit code passed through.

Ctrl-C reaches the child through the terminal's process group; mhgen then waits for the child to
save and exit rather than dying first and leaving it orphaned.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def run_script(script: Path, args: list[str], processes: int = 1) -> int:
    """python SCRIPT ARGS, or torchrun with ``processes`` processes on this machine."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    command = [*launcher, str(script), *args]
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
