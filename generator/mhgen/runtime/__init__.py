"""The emitted scripts' support code: ordinary modules, linted and tested by importing them, that
the compiler appends verbatim after each script's recipe (see render.py).

Rules that keep a module appendable: a comment header instead of a docstring; only standard
library imports at the top (they are hoisted into the script's import block; imports between
these modules are dropped, since the script is one namespace); third-party libraries imported
inside the functions that need them (a script answers --help and --dry-run without torch);
no Jinja, and nothing read from the script's settings: what differs between runs comes in as
arguments.
"""

# The order the modules are appended in: each uses only what the ones before it define, or
# what is called at run time (every name exists once the script has been read)
CORE = (
    "messages",
    "sources",
    "data",
    "fingerprints",
    "model_files",
    "output_folder",
    "training",
    "samples",
    "mxfp4",
    "merge",
    "stages",
)
# appended to the scripts that quantize a mixture-of-experts model's experts themselves
EXPERTS = ("experts_nf4",)
# appended to the scripts that train on preference pairs (method dpo)
PREFERENCE = ("preference",)
