# ---- the data: reading it from any source, checking every row, tokenizing it once

import atexit
import collections
import contextlib
import functools
import hashlib
import inspect
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from .fingerprints import fingerprint, fingerprint_name, tokenizer_fingerprint
from .messages import row_shape
from .model_files import print_main
from .sources import LOADERS, ChatFormat, DataSource, data_name, is_lines_file, load_table

IGNORE_INDEX = -100  # label of tokens that do not count in the loss
LABELED = ("input_ids", "labels")  # an example's token columns (a pair's: twice, see sides)


def parse_row(
    index: int, raw: bytes, name: str, to_conversation, in_table: bool = False
) -> tuple[dict | None, str]:
    """Row ``index`` (from 0) of the data ``name``: a JSONL file's line (named by its number,
    from 1), or in a table datasets read (``in_table``) its row as JSON (named by its index).
    Returns (its conversation, ""), or (None, what is wrong with it, naming the row), or (None,
    "") when it is a blank line."""
    where = f"{name} row {index}" if in_table else f"{name}:{index + 1}"
    try:
        line = raw.decode("utf-8-sig" if index == 0 else "utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
        return None, (
            f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}); "
            "save the file as UTF-8"
        )
    if not line.strip():
        return None, ""
    try:
        return to_conversation(json.loads(line)), ""
    except json.JSONDecodeError as exc:
        return None, f"{where}: invalid JSON: {exc.msg} (column {exc.colno})"
    except KeyError as exc:
        return None, f"{where}: missing key {exc.args[0]!r}"
    except (ValueError, TypeError) as exc:  # DataError is a ValueError
        return None, f"{where}: {exc}"


def first_conversations(source: DataSource, count: int) -> list[dict]:
    """The first ``count`` examples of the data, for the dry run and the chat template check."""
    if not is_lines_file(source.path):
        return table_conversations(source, range(count))
    found = []
    with source.path.open("rb") as f:
        for index, raw in enumerate(f):
            conversation, _ = parse_row(index, raw, str(source.path), source.to_conversation)
            found += [conversation] if conversation else []
            if len(found) == count:
                break
    return found


def conversations_at(source: DataSource, rows: list[int]) -> list[dict]:
    """The conversations of the data's rows numbered ``rows`` (from 0; a JSONL file's lines), in
    that order."""
    if not is_lines_file(source.path):
        return table_conversations(source, rows)
    found = {}
    with source.path.open("rb") as f:
        for index, raw in enumerate(f):
            if index in rows:
                found[index], _ = parse_row(index, raw, str(source.path), source.to_conversation)
            if len(found) == len(set(rows)):
                break
    return [found[row] for row in rows]


def table_conversations(source: DataSource, rows) -> list[dict]:
    """The conversations of a table's rows numbered ``rows`` (from 0; those it has), in order."""
    lines = lines_dataset(source, None)
    rows = [row for row in rows if row < len(lines)]
    name, read = data_name(source), source.to_conversation
    selected = lines.select(rows)["line"]
    return [
        parse_row(row, raw, name, read, True)[0] for row, raw in zip(rows, selected, strict=True)
    ]


def file_lines(path: str, fingerprint: str):
    """The lines of a file, as bytes, for datasets.Dataset.from_generator (``fingerprint``, the
    file's, makes datasets' own cache of them follow the content, not just the name)."""
    with open(path, "rb") as f:
        for raw in f:
            yield {"line": raw}


def without_nulls(value):
    """A row from a table as its JSON would be: Arrow gives every row the keys of all rows (null
    where a row has none, tool call arguments too), so in a table null means absent."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def as_lines(batch: dict) -> dict:
    """datasets.map over a batch of rows: each as one JSON line, the form check_rows and
    tokenize_rows read."""
    rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
    return {"line": [json.dumps(without_nulls(row), default=str).encode("utf-8") for row in rows]}


def lines_dataset(source: DataSource, cache: Path | None):
    """The data's rows as lines of JSON, in an Arrow table on disk, made once: a JSONL file's
    lines (in ``cache``), or what datasets.load_dataset reads, turned into lines (in its cache)."""
    from datasets import Dataset, Features, Value

    features = Features({"line": Value("binary")})
    if not is_lines_file(source.path):
        rows = load_table(source)
        return rows.map(as_lines, batched=True, remove_columns=rows.column_names, features=features)
    return Dataset.from_generator(
        file_lines,
        features=features,
        gen_kwargs={"path": str(source.path), "fingerprint": fingerprint(source)},
        cache_dir=str(cache / "lines" / fingerprint_name(source)),
    )


LOCK_BEAT = 10  # seconds between the refreshes of a cache entry's lock while it is made
LOCK_STALE = 120  # a lock unchanged this long was left by a process that stopped
making: set[Path] = set()  # the entries this process makes: their locks beat while they are here
# (entries, not threads: datasets.map sends the functions of this script, with its globals, to
# its worker processes, and a thread cannot be sent)


def first_process_makes(entry: Path) -> bool:
    """Whether this process makes ``entry`` of the cache, the others waiting until it is there.
    One process per machine competes (LOCAL_RANK 0 under torchrun): it makes the entry if it
    creates ENTRY.lock (in one step: only one process can), and refreshes the lock while it
    works; else it waits for whoever holds the lock. So a cache on each machine's own disk is
    made once per machine, a cache every machine sees once in all. A lock that stops changing
    (its maker was killed) is taken over; made_entry(entry) releases it."""
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        while not entry.exists():  # this machine's first process makes it or waits: torchrun
            time.sleep(0.5)  # stops every process of the machine if it fails
        return False
    lock = entry.with_name(entry.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while not entry.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            making.add(entry)
            threading.Thread(target=beat, args=(entry,), name=f"lock {lock}", daemon=True).start()
            return True
        wait_for_lock(lock, entry)
    return False


def lock_owner() -> str:
    """Who holds a lock: this machine and process, as a lock file says."""
    return f"{socket.gethostname()} {os.getpid()}"


def beat(entry: Path) -> None:
    """While this process makes ``entry``: its lock's content changes every LOCK_BEAT seconds."""
    lock, count = entry.with_name(entry.name + ".lock"), 0
    while entry in making:
        count += 1
        with contextlib.suppress(OSError):  # never made again once it is gone
            fd = os.open(lock, os.O_WRONLY | os.O_TRUNC)
            os.write(fd, f"{lock_owner()} {count}\n".encode())
            os.close(fd)
        for _ in range(LOCK_BEAT * 2):
            if entry not in making:
                return
            time.sleep(0.5)


def made_entry(entry: Path) -> None:
    """``entry`` is in place (or will not be: this process stops): its lock goes."""
    if entry not in making:
        return
    making.discard(entry)
    lock = entry.with_name(entry.name + ".lock")
    for beating in threading.enumerate():
        if beating.name == f"lock {lock}":
            beating.join()  # its last write is done: the lock is removed after it
    lock.unlink(missing_ok=True)


@atexit.register
def release_locks() -> None:
    """A maker that stops before its entry is made lets a waiting process take over at once."""
    for entry in list(making):
        made_entry(entry)


def wait_for_lock(lock: Path, entry: Path) -> None:
    """Wait until ``entry`` is there, its lock is gone, or the lock is stale (then removed): its
    content unchanged for LOCK_STALE seconds, or its process gone from this machine."""
    said, last, since = False, None, time.monotonic()
    while not entry.exists():
        try:
            content = lock.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        if content != last:
            last, since = content, time.monotonic()
        owner = content.split()  # host, process, beat
        gone = len(owner) > 1 and owner[0] == socket.gethostname() and not alive(int(owner[1]))
        if gone or time.monotonic() - since > LOCK_STALE:
            print(f"note: {lock} was left by a process that stopped ({content.strip()}); taking it")
            lock.unlink(missing_ok=True)
            return
        if not said:
            print(f"waiting for {content.strip() or 'another process'} to make {entry}", flush=True)
            said = True
        time.sleep(0.5)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def processes(rows: int) -> int:
    """Processes for datasets.map: one per 20,000 rows, at most one per CPU core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, rows // 20_000))


def row_problems(
    lines: list[bytes], indices: list[int], name: str, to_conversation, in_table: bool
) -> dict:
    """datasets.map over a batch of lines: for each, what is wrong with it ("" when nothing),
    whether it is blank, and its shape."""
    out = {"problem": [], "blank": [], "shape": []}
    for index, raw in zip(indices, lines, strict=True):
        conversation, problem = parse_row(index, raw, name, to_conversation, in_table)
        out["problem"].append(problem)
        out["blank"].append(conversation is None and not problem)
        out["shape"].append(row_shape(json.loads(raw)) if conversation else "")
    return out


def check_rows(source: DataSource, cache: Path) -> None:
    """Every malformed row reported (the first 20, and how many more), in one run and before
    anything loads. Data found whole once is not read again for this while the data and the code
    that reads a row (to_conversation and all it calls: the chat format, the settings it reads)
    are the same."""
    path = source.path
    if (is_lines_file(path) or path.suffix.lower() in LOADERS) and not path.is_file():
        sys.exit(f"error: {path}: no such data file (set dataset_path in the config, or --data)")
    if is_lines_file(path) and path.stat().st_size == 0:
        sys.exit(f"error: {path}: no examples")
    name = data_name(source)
    marker = cache / "checked" / cache_key(fingerprint(source), code_of(source.to_conversation))
    if marker.is_file() or not first_process_makes(marker):
        print_main(f"data: {name}, checked by an earlier run with the same chat format")
        return
    try:
        check_every_row(source, cache, name)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(path) + "\n", encoding="utf-8")
    finally:  # made, or this process stops: the lock goes
        made_entry(marker)


def check_every_row(source: DataSource, cache: Path, name: str) -> None:
    """check_rows' work: every row read and checked, in parallel; stops on the first bad rows."""
    from datasets import Features, Value

    started = time.monotonic()
    lines = lines_dataset(source, cache)
    checked = lines.map(
        row_problems,
        batched=True,
        with_indices=True,
        input_columns=["line"],
        remove_columns=["line"],
        num_proc=processes(len(lines)),
        features=Features(
            {"problem": Value("string"), "blank": Value("bool"), "shape": Value("string")}
        ),
        fn_kwargs={
            "name": name,
            "to_conversation": source.to_conversation,
            "in_table": not is_lines_file(source.path),
        },
        desc=f"checking {name}",
    )
    bad = checked.filter(
        lambda problems: [bool(p) for p in problems], input_columns=["problem"], batched=True
    )
    if len(bad):
        more = f"\n... and {len(bad) - 20} more" if len(bad) > 20 else ""
        sys.exit("\n".join(bad.select(range(min(20, len(bad))))[:]["problem"]) + more)
    shapes = collections.Counter(shape for shape in checked["shape"] if shape)
    if not shapes:
        sys.exit(f"error: {name}: no examples")
    found = ", ".join(f"{count} {shape}" for shape, count in shapes.most_common())
    took = seconds_since(started)  # said by the process that checked, on each machine that did
    print(f"data: {name}: {shapes.total()} rows ({found}), checked in {took}", flush=True)


def seconds_since(started: float) -> str:
    """The seconds since ``started`` (time.monotonic), to say how long a stage took."""
    return f"{time.monotonic() - started:.1f} s"


def tokens_and_labels(tokenizer, segments: list[tuple[str, bool]]) -> dict:
    """Token ids of a conversation's text, given as (text, trained) segments, and their labels:
    the id where a token starts inside a trained segment, IGNORE_INDEX elsewhere. The text
    carries its own special tokens: the tokenizer adds none."""
    encoding = tokenizer(
        "".join(text for text, _ in segments),
        add_special_tokens=False,
        return_offsets_mapping=True,
        verbose=False,  # no warning for a long one: tokenize_rows cuts it and counts it
    )
    spans, start = [], 0
    for text, trained in segments:
        if trained:
            spans.append((start, start + len(text)))
        start += len(text)
    labels = [
        token if any(a <= begin < b for a, b in spans) else IGNORE_INDEX
        for token, (begin, _) in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True)
    ]
    return {"input_ids": encoding["input_ids"], "labels": labels}


def tokenize_rows(
    lines: list[bytes],
    indices: list[int],
    name: str,
    to_conversation,
    in_table: bool,
    tokenize,
    max_length: int,
    sides: tuple[str, ...] = ("",),
) -> dict:
    """datasets.map over a batch of checked lines: each example's token ids and labels (by
    ``tokenize``; a pair's: one sequence per prefix of ``sides``) cut to ``max_length``, its
    length before the cut (a pair's longer one), whether every sequence has a trained token
    left, and its row (the line's index in the file: --sample finds the held-out rows by it)."""
    out = {f"{side}{key}": [] for side in sides for key in ("input_ids", "labels")}
    out |= {"length": [], "kept": [], "row": indices}
    for index, raw in zip(indices, lines, strict=True):
        conversation, _ = parse_row(index, raw, name, to_conversation, in_table)
        example = tokenize(**conversation) if conversation else {}
        lengths, kept = [], True
        for side in sides:
            ids, labels = example.get(side + "input_ids", []), example.get(side + "labels", [])
            lengths.append(len(ids))  # 0: a blank line
            out[side + "input_ids"].append(ids[:max_length])
            out[side + "labels"].append(labels[:max_length])
            kept = kept and any(label != IGNORE_INDEX for label in labels[:max_length])
        out["length"].append(max(lengths))
        out["kept"].append(kept)
    return out


def cache_key(*parts: str) -> str:
    """A folder name for what ``parts`` decide."""

    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:32]


def code_of(function, seen=None) -> str:
    """The compiled code of ``function`` (a plain function, or a functools.partial of one with
    its arguments) and of every function of its module it calls, and the values of the
    constants they read: everything that decides what it returns."""

    if isinstance(function, functools.partial):
        arguments = [
            tokenizer_fingerprint(a) if hasattr(a, "get_vocab") else repr(a) for a in function.args
        ]
        return f"{arguments} {function.keywords!r}\n" + code_of(function.func, seen)
    seen = set() if seen is None else seen
    parts, codes, names = [], [function.__code__], function.__globals__
    while codes:
        code = codes.pop()
        constants = [c for c in code.co_consts if not inspect.iscode(c)]
        parts.append(f"{code.co_code.hex()} {constants!r} {code.co_names}")
        codes += [c for c in code.co_consts if inspect.iscode(c)]  # comprehensions, lambdas
        for name in sorted(set(code.co_names) - seen):
            seen.add(name)
            value = names.get(name)
            if inspect.isfunction(value) and value.__module__ == function.__module__:
                parts.append(code_of(value, seen))
            elif name.isupper() and name in names:
                parts.append(f"{name} = {value!r}")
    return "\n".join(parts)


def tokenized(source: DataSource, tokenize, cache: Path, max_length: int, kept: bool = True):
    """The examples of the data as an Arrow dataset on disk (input_ids, labels, length, row; a
    pair's rejected_input_ids and rejected_labels too), made in parallel once: ``tokenize`` (a
    conversation's tokens and labels) cut to ``max_length``; returned with the length profile.
    A later run on the same data with the same tokenizer and code takes them from ``cache``, in
    the folder named by all that decides them (``kept`` False: this run deletes it when it ends,
    so its name is not printed)."""
    from datasets import load_from_disk

    key = cache_key(
        fingerprint(source),
        code_of(tokenize),
        code_of(tokenize_rows),
        code_of(source.to_conversation),
    )
    folder = cache / "tokens" / cache_key(key, code_of(as_lines), str(max_length))
    made = folder / "mhgen_profile.json"
    if made.is_file() or not first_process_makes(folder):
        print_main(
            f"tokenized data: {folder} (made by an earlier run on the same data; safe to delete)"
        )
        return load_from_disk(str(folder)), json.loads(made.read_text(encoding="utf-8"))
    started = time.monotonic()
    try:
        profile, rows, workers = write_tokens(source, tokenize, cache, folder, max_length)
    finally:  # made, or this process stops: the lock goes
        made_entry(folder)
    if is_lines_file(source.path):  # its lines: the tokens are made
        shutil.rmtree(cache / "lines" / fingerprint_name(source), ignore_errors=True)
        with contextlib.suppress(OSError):  # another run's lines may be there: they stay
            (cache / "lines").rmdir()
    count = f"{workers} processes" if workers > 1 else "1 process"
    print(f"tokenized {rows} rows in {seconds_since(started)} ({count})", flush=True)
    if kept:
        reused = "a later run on the same data reuses it; safe to delete"
        print(f"tokenized data: {folder} ({reused})", flush=True)
    return load_from_disk(str(folder)), profile


def write_tokens(source: DataSource, tokenize, cache: Path, folder: Path, max_length: int):
    """tokenized's work: the examples written to ``folder``, in parallel; returns their length
    profile, the rows read and the processes that read them."""
    from datasets import Features, List, Value

    name, lines = data_name(source), lines_dataset(source, cache)
    workers = processes(len(lines))
    if workers > 1:  # each process tokenizes on one thread: the parallelism is theirs
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    sequences = {f"{side}{key}": List(Value("int32")) for side in source.sides for key in LABELED}
    rows = lines.map(
        tokenize_rows,
        batched=True,
        with_indices=True,
        input_columns=["line"],
        remove_columns=["line"],
        num_proc=workers,
        features=Features(
            {**sequences, "length": Value("int32"), "kept": Value("bool"), "row": Value("int64")}
        ),
        fn_kwargs={
            "name": name,
            "to_conversation": source.to_conversation,
            "in_table": not is_lines_file(source.path),
            "tokenize": tokenize,
            "max_length": max_length,
            "sides": source.sides,
        },
        desc=f"tokenizing {name} ({workers} processes)",
    )
    columns = rows.select_columns(["length", "kept"]).with_format("numpy")[:]
    profile = length_profile(columns["length"], columns["kept"], max_length)
    examples = rows.filter(lambda k: k, input_columns=["kept"], batched=True).remove_columns("kept")
    # a staging folder of this process's own: two runs sharing the cache never write into one
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(f".{os.getpid()}.in-progress", folder.name + ".", folder.parent)
    )
    examples.save_to_disk(str(staging))
    (staging / "mhgen_profile.json").write_text(json.dumps(profile), encoding="utf-8")
    try:
        os.rename(staging, folder)  # in one step; fails where another run made it first
    except OSError:
        shutil.rmtree(staging)  # the same tokens, made by another run first: those are used
    return profile, len(lines), workers


def length_profile(lengths, kept, max_length: int) -> dict:
    """The token lengths of the examples (before ``max_length`` cuts them; 0: a blank line) and
    what the cut does, from two numpy arrays."""
    import numpy as np

    real = lengths > 0
    ordered = np.sort(lengths[real])

    def percentile(p: float) -> int:
        return int(ordered[min(len(ordered) - 1, int(p * len(ordered)))])

    return {
        "examples": int(real.sum()),
        "min": percentile(0),
        "median": percentile(0.5),
        "p95": percentile(0.95),
        "max": int(ordered[-1]),
        "max_length": max_length,
        "truncated": int((lengths > max_length).sum()),
        "dropped_no_target": int((real & ~kept).sum()),  # truncation cut every trained token
        "kept": int(kept.sum()),
    }


def describe(profile: dict) -> str:
    """Token-length profile of the data and what MAX_SEQ_LENGTH does to it."""
    return (
        f"tokens per example: min {profile['min']}, median {profile['median']}, p95 "
        f"{profile['p95']}, max {profile['max']}\n{profile['examples']} examples: "
        f"{profile['truncated']} longer than MAX_SEQ_LENGTH={profile['max_length']} are "
        f"truncated, {profile['dropped_no_target']} left with no assistant token are dropped, "
        f"{profile['kept']} train"
    )


def check_chat_template(
    tokenizer, conversations: list[dict], chat: ChatFormat, template_check: str
) -> None:
    """Render the first examples with the tokenizer's own chat template too, and compare
    (``template_check``: "error" stops the run at a difference, "warn" says so, "off" skips)."""
    if template_check == "off":
        return
    if not getattr(tokenizer, "chat_template", None):
        print_main("note: the tokenizer has no chat template of its own; nothing to compare with")
        return
    for number, conversation in enumerate(conversations[:3], start=1):
        texts = zip(chat.texts(conversation), chat.texts(conversation, tokenizer), strict=True)
        differing = [(side, *pair) for side, pair in enumerate(texts) if pair[0] != pair[1]]
        if not differing:
            continue
        side, ours, theirs = differing[0]  # side 1: a pair's rejected conversation
        pairs = zip(ours, theirs, strict=False)  # strict=False: the shorter text may end first
        at = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(ours), len(theirs)))
        which = f"example {number}" + (" (rejected)" if side else "")
        report = (
            f"{which}: the training text differs from the tokenizer's chat "
            f"template at character {at}:\n  this script: {ours[max(0, at - 40) : at + 40]!r}\n"
            f"  template:    {theirs[max(0, at - 40) : at + 40]!r}"
        )
        if template_check == "error":
            sys.exit(
                f'error: {report}\nSet "template_check": "warn" in the config to train anyway.'
            )
        print_main(f"warning: {report}")
        return
    kind = "pairs" if "rejected" in conversations[0] else "examples"
    print_main(
        f"chat template check: {min(3, len(conversations))} {kind} match the tokenizer's own"
    )


def split_eval(dataset, fraction: float, seed: int):
    """(train, evaluation) of a Dataset: ``fraction`` of its examples, drawn with ``seed``, held
    out (none where fraction is 0)."""

    if fraction == 0 or len(dataset) < 2:
        return dataset, None
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(order) * fraction))
    return dataset.select(order[n_eval:]), dataset.select(order[:n_eval])
