"""``python -m mhgen.torchrun ARGS``: torchrun (``python -m torch.distributed.run ARGS``), as
``mhgen run`` launches it, with its failures said in one line instead of its traceback: the
script's own processes have said why above it."""

from __future__ import annotations

import sys


def main() -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous import RendezvousError
    from torch.distributed.run import main as torchrun

    try:
        torchrun()
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        how = f"status {failure.exitcode}"
        if failure.exitcode < 0:
            how = f"signal {failure.signal_name()}"
        print(f"mhgen: torchrun: process {rank} stopped ({how}); see above", file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else 1
    except RendezvousError as exc:  # the machine that hosts the rendezvous went away, or never came
        print(f"mhgen: torchrun: the machines lost their meeting point: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
