"""The versions the test suite runs the emitted scripts with (pyproject's `test` extra pins exactly
these; tests/test_repository.py keeps the two equal). `mhgen bundle` writes them into the
requirements.txt it hands to a colleague or a rented GPU box."""

TESTED = {
    "torch": "2.13.0",
    "transformers": "5.24.0",
    "trl": "1.16.0",
    "peft": "0.21.2",
    "bitsandbytes": "0.50.2",
    "accelerate": "1.15.0",
    "datasets": "5.2.0",
    "tensorboard": "2.21.0",  # report_to's default
}
