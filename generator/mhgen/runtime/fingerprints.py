# ---- fingerprints: what identifies the data's content and the tokenizer

import functools
import hashlib
import json
import time

from .model_files import print_main
from .sources import DataSource, is_lines_file, load_table


def fingerprint(source: DataSource) -> str:
    """What identifies the data's content: a JSONL file's sha256 (every byte: an edit anywhere
    changes it), computed once per run, or the fingerprint datasets gives what it read."""
    if not is_lines_file(source.path):
        return "datasets:" + load_table(source)._fingerprint
    stat = source.path.stat()
    return content_fingerprint(str(source.path), stat.st_size, stat.st_mtime_ns)


def fingerprint_name(source: DataSource) -> str:
    """The fingerprint as a file name."""
    return hashlib.sha256(fingerprint(source).encode("utf-8")).hexdigest()[:32]


@functools.cache
def content_fingerprint(path: str, size: int, modified: int) -> str:
    """The sha256 of a data file (``size`` and ``modified`` make a changed file a new entry of
    the cache); a file over a GiB says how long hashing it took (about a second a GiB)."""
    started = time.monotonic()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    if size > 1 << 30:
        print_main(
            f"data: {path}: {size / 2**30:.1f} GiB hashed in {time.monotonic() - started:.1f} s"
        )
    return "sha256:" + digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """The sha256 of everything that decides the tokenizer's tokens: its vocabulary, merges and
    rules, special tokens and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    rules = (
        backend.to_str()
        if backend is not None
        else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    )
    extra = json.dumps(
        [tokenizer.special_tokens_map, tokenizer.chat_template], sort_keys=True, default=str
    )
    return "sha256:" + hashlib.sha256((rules + extra).encode("utf-8")).hexdigest()
