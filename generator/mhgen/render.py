"""Render a Plan into Python source with Jinja.

Templates see only the frozen Plan. Every value reaches the code through one of two filters:
``py`` (a Python literal, like repr) and ``docstring`` (text safe inside a triple-quoted string).
Nothing a user wrote is ever pasted into code or comments as is.
"""

from __future__ import annotations

import math
import unicodedata
from functools import cache
from typing import Any

import jinja2

from . import appendix
from .resolve import ORIGIN_WORDS, Plan

BODY_HASH_PLACEHOLDER = "0" * 64


STRING_WIDTH = 76  # longest string literal on one line; longer text becomes a run of literals


def py(value: Any) -> str:
    """A Python literal that evaluates (ast.literal_eval) to exactly ``value``.

    A string too long for one line becomes a parenthesised run of adjacent literals, which Python
    joins back into the same string (no formatter splits a string literal by itself).
    """
    if isinstance(value, str) and columns(repr(value)) > STRING_WIDTH:
        return "(\n" + "\n".join(repr(chunk) for chunk in _chunks(value)) + "\n)"
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no Python literal")
        return repr(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(py(v) for v in value)
        if isinstance(value, list):
            return f"[{inner}]"
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py(k)}: {py(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Python literal for {type(value).__name__}")


def columns(text: str) -> int:
    """Columns ``text`` takes as ruff counts line length (Unicode display width), or more: East
    Asian wide and fullwidth characters take two, and so does every character outside the Basic
    Multilingual Plane or unassigned in this Python's Unicode tables (emoji and CJK extensions are
    wide there, and a newer Unicode may have made an unassigned one wide)."""
    return sum(
        2
        if ord(ch) > 0xFFFF
        or unicodedata.east_asian_width(ch) in "WF"
        or unicodedata.category(ch) == "Cn"
        else 1
        for ch in text
    )


def _chunks(text: str) -> list[str]:
    """Cut ``text`` into pieces whose literals fit STRING_WIDTH, after a newline where one falls."""
    chunks, current = [], ""
    for ch in text:
        if current and columns(repr(current + ch)) > STRING_WIDTH:
            chunks.append(current)
            current = ""
        current += ch
        if ch == "\n" and columns(repr(current)) > STRING_WIDTH // 2:
            chunks.append(current)
            current = ""
    return [*chunks, current] if current else chunks


def toml_string(value: str) -> str:
    """A TOML basic string (for the PEP 723 block), from mhgen's own constant strings."""
    import json

    return json.dumps(value)


def docstring(text: str) -> str:
    """``text`` escaped to sit inside a non-raw triple-double-quoted string.

    Backslashes and double quotes are escaped, and so is every character that Python's tokenizer
    would not keep as written (carriage returns, NUL and other control characters, line and
    paragraph separators), so the docstring reads back as the same text.
    """
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch in "\n\t":
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in "\x0b\x0c\x85":
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def docwrap(text: str, indent: int = 4, width: int = 96, first: int = 0) -> str:
    """``text`` escaped as by ``docstring`` and wrapped so that no line, escapes included, is
    wider than ``width`` columns; continuation lines are indented. The user's own line breaks stay.

    Words are packed by their escaped length, and a word too long for a line is cut between
    characters, never inside an escape sequence.
    """
    room = width - indent
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, used = "", 0  # used: the columns of line
        for word in paragraph.split():
            piece = docstring(word)
            if line and used + 1 + columns(piece) <= room:
                line += " " + piece
                used += 1 + columns(piece)
                continue
            if line:
                lines.append(line)
            line = ""
            for ch in word:  # pack the word itself, cutting it where it does not fit
                escaped = docstring(ch)
                if columns(line) + columns(escaped) > room:
                    lines.append(line)
                    line = ""
                line += escaped
            used = columns(line)
        lines.append(line)
    # an empty paragraph is an empty line, not a line of indentation (W293); the first line gets
    # ``first`` spaces, so that a blank note is a blank line too
    body = "\n".join((" " * indent + line) if line else "" for line in lines).strip()
    return " " * first + body if body else ""


def comment(text: str, width: int = 100) -> str:
    """``text`` as ``#`` comment lines no wider than ``width``, escaped as by ``docstring`` so that
    no character of it can end the comment or hide in it."""
    body = docwrap(text, indent=0, width=width - 2)
    return "\n".join("# " + line if line else "#" for line in body.split("\n"))


def bytecode_cache() -> jinja2.BytecodeCache | None:
    """Jinja's compiled templates, kept between runs in the user's cache folder (each keyed by
    its template's source, so an edited template is compiled anew): compiling them on every call
    costs more than the rest of ``mhgen compile``. None where no such folder can be made."""
    import os
    from pathlib import Path

    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    folder = Path(root) / "mhgen" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mhgen", "templates"),
        bytecode_cache=bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = py
    env.filters["docstring"] = docstring
    env.filters["docwrap"] = docwrap
    env.filters["comment"] = comment
    env.filters["toml"] = toml_string
    return env


# the standard library the recipe itself uses; the runtime's imports are added to these
RECIPE_IMPORTS = frozenset(
    {("argparse", None, None), ("functools", None, None), ("json", None, None), ("os", None, None)}
    | {("sys", None, None), ("time", None, None), ("pathlib", "Path", None)}
)


def runtime_blocks(plan: Plan) -> list[appendix.Block]:
    """The runtime blocks the plan's script carries: the core, the preference pairs of method
    dpo, and the 4-bit experts loader where the script quantizes a mixture-of-experts model's
    experts itself."""
    blocks = [appendix.core()]
    blocks += [appendix.preference()] if plan.preference else []
    return blocks + ([appendix.experts()] if plan.experts_4bit else [])


def render(plan: Plan) -> str:
    """The recipe's text, before formatting (its body hash still a placeholder): the header,
    the settings, the chat format, conversation -> tokens, model + LoRA, the trainer's settings
    and main(). Its import block holds the runtime's imports too."""
    # after a constant: how its value was chosen ("  # auto-detected"), nothing for the config's
    origins = plan.origins.items()
    comment = {k: "" if o == "config" else f"  # {ORIGIN_WORDS[o]}" for k, o in origins}
    imports = set(RECIPE_IMPORTS)
    for block in runtime_blocks(plan):
        imports |= block.imports
    template = environment().get_template("train.py.j2")
    text = template.render(
        plan=plan,
        v=plan.values,
        comment=comment,
        format_template=plan.format_template,
        body_hash=BODY_HASH_PLACEHOLDER,
        imports=appendix.import_lines(imports),
        summary=summary(plan),
        data_note=data_note(plan),
        usage=usage(plan),
    )
    return "\n".join(_origin_above(line) for line in text.split("\n"))


def summary(plan: Plan) -> str:
    """The docstring's first sentence (the script's --help)."""
    kind = "QLoRA (4-bit)" if plan.values["load_in_4bit"] else "LoRA"
    model, chat = plan.values["base_model"], plan.chat_format
    if plan.preference:
        return f"Preference-tune (DPO) a {kind} adapter of {model} on pairs of {chat} replies."
    return f"Fine-tune a {kind} adapter of {model} on {chat} conversations."


# the row shapes each dataset_format reads, by their keys (as --dry-run names them)
ROW_SHAPE_WORDS = {
    "messages": "messages (tools optional)",
    "prompt_completion": "prompt + completion",
    "instruction": "instruction + output (input optional)",
    "sharegpt": "ShareGPT conversations",
}


def data_note(plan: Plan) -> str:
    """The docstring's paragraph on the data: where it is read from and the rows it takes. It
    names no path, so that a config pointing at other data changes one line of the script."""
    fmt = plan.values["dataset_format"]
    if plan.preference:
        return (
            "Data: DATASET_PATH below, or --data PATH: a .jsonl, .json, .csv or .parquet file, a "
            "saved dataset folder or a Hugging Face Hub dataset, one preference pair per row of "
            "any of these shapes: prompt + chosen + rejected (texts or messages), chosen + "
            "rejected (whole conversations sharing their prompt), question + chosen + rejected, "
            "instruction + chosen_response + rejected_response (tools and a system message are "
            "optional in each)."
        )
    if fmt == "auto":
        rows = "of any of these shapes: " + ", ".join(ROW_SHAPE_WORDS.values())
    else:
        rows = "with the keys " + ROW_SHAPE_WORDS[fmt]
    return (
        "Data: DATASET_PATH below, or --data PATH: a .jsonl, .json, .csv or .parquet file, a saved "
        f"dataset folder or a Hugging Face Hub dataset, one conversation per row {rows}."
    )


def usage(plan: Plan) -> str:
    """The docstring's commands: on one machine, and on two (torchrun's c10d rendezvous). The
    script is named in the commands only, so that a config saved under another name changes few
    lines."""
    script, processes = plan.script_name, plan.values["num_processes"]
    gpus = processes if processes > 1 else 4
    if processes > 1:
        where = f"{processes} GPUs ({plan.values['distributed_strategy']}), with python on one"
    else:
        where = "one GPU, with torchrun on 4 (DDP)"
    where += f", or on two machines of {gpus}"
    torchrun = f"torchrun --nproc-per-node {gpus} {script}"
    nodes = (
        f"torchrun --nnodes 2 --nproc-per-node {gpus} --rdzv-backend c10d --rdzv-endpoint "
        f"HOST:29500 \\\\\n        {script}"  # in the script's text: a backslash, escaped
    )
    merge = "--merge (the base model with the adapter merged in"
    if plan.family.model_type == "gpt_oss":
        merge += "; --merge-format mxfp4 writes the experts in MXFP4, as gpt-oss ships them"
    flags = (
        "Each takes --resume (continue from the last checkpoint), --dry-run (check the data and "
        "the training text; loads no model), --sample 4 (replies to 4 held-out prompts) and "
        f"{merge}), the last two also alone on a finished run. Two machines both run the last "
        "command (HOST: the first one's address), with output_dir on storage both see."
    )
    commands = f"    python {script}\n    {torchrun}\n    {nodes}"
    return f"Train on {where}:\n{commands}\n{docwrap(flags, indent=0)}"


def _origin_above(line: str, width: int = 100) -> str:
    """A constant whose origin comment would make its line too long, with the comment above it
    (else the formatter breaks the value over many lines)."""
    name, _, rest = line.partition(" = ")
    value, mark, origin = rest.rpartition("  # ")
    if not (name.isupper() and mark and origin in ORIGIN_WORDS.values()) or columns(line) <= width:
        return line
    return f"# {name}: {origin}\n{name} = {value}"


def append_runtime(recipe: str, plan: Plan) -> str:
    """The formatted recipe, then each runtime block after its boundary comment, verbatim, then
    the call of main() that ends the script."""
    core, *more = runtime_blocks(plan)
    parts = [recipe.rstrip("\n")]
    parts.append(
        appendix.boundary("the same in every script this version writes", core.sha256)
        + "\n\n"
        + core.text.rstrip("\n")
    )
    for block in more:
        what = "4-bit experts: the same in every mixture-of-experts script"
        if block == appendix.preference():
            what = "preference pairs: the same in every DPO script"
        parts.append(appendix.boundary(what, block.sha256) + "\n\n" + block.text.rstrip("\n"))
    parts.append('if __name__ == "__main__":\n    main()\n')
    return "\n\n\n".join(parts)
