"""Run an emitted script with SIGTERM sent to itself at one exact point of training.

    INJECT_SIGNAL=EVENT:N:COUNT[:RANK] python tests/inject_signal.py SCRIPT ARGS...

EVENT is a trainer callback event (on_substep_end, on_step_end, on_prediction_step, ...),
``save``, the middle of writing a checkpoint (after the adapter, before the optimizer state),
``generate``, a reply being generated (--sample), or ``save_file``, a safetensors file being
written (--merge writes one per decoder layer). At
the N-th such point the process sends itself COUNT SIGTERMs, only on that torchrun RANK when one
is given. The signal goes through the script's own handler, as a real one would.
"""

import os
import runpy
import signal
import sys

from transformers import Trainer
from transformers.trainer_callback import CallbackHandler

event, nth, count, *rank = os.environ["INJECT_SIGNAL"].split(":")
seen = 0


def arrived() -> None:
    global seen
    seen += 1
    if seen == int(nth) and rank in ([], [os.environ.get("RANK", "0")]):
        for _ in range(int(count)):
            os.kill(os.getpid(), signal.SIGTERM)  # its Python handler runs before the next line


if event == "generate":
    from transformers import GenerationMixin

    generate = GenerationMixin.generate

    def generating(self, *args, **kwargs):
        arrived()
        return generate(self, *args, **kwargs)

    GenerationMixin.generate = generating
elif event == "save_file":
    import safetensors.torch

    save_file = safetensors.torch.save_file

    def saving(*args, **kwargs):
        arrived()
        return save_file(*args, **kwargs)

    safetensors.torch.save_file = saving
elif event == "save":
    save_optimizer = Trainer._save_optimizer_and_scheduler

    def _save_optimizer_and_scheduler(self, output_dir):
        arrived()
        return save_optimizer(self, output_dir)

    Trainer._save_optimizer_and_scheduler = _save_optimizer_and_scheduler
else:
    call_event = CallbackHandler.call_event

    def _call_event(self, name, *args, **kwargs):
        if name == event:
            arrived()
        return call_event(self, name, *args, **kwargs)

    CallbackHandler.call_event = _call_event

sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
