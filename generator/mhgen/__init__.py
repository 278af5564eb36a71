"""mhgen: compile a short training config into a standalone, readable fine-tuning script."""

__version__ = "0.5.0"
