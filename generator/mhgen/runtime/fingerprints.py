# ---- fingerprints: what identifies the data's content and the tokenizer

import functools
import hashlib
import json

from .sources import DataSource, is_lines_file, load_table

FINGERPRINT_WHOLE = 256 << 20  # bytes: a data file up to this size is hashed whole


def fingerprint(source: DataSource) -> str:
    """What identifies the data's content: a JSONL file's (see content_fingerprint), computed
    once per run, or the fingerprint datasets gives what it read."""
    if not is_lines_file(source.path):
        return "datasets:" + load_table(source)._fingerprint
    stat = source.path.stat()
    return content_fingerprint(str(source.path), stat.st_size, stat.st_mtime_ns, FINGERPRINT_WHOLE)


def fingerprint_name(source: DataSource) -> str:
    """The fingerprint as a file name."""
    return hashlib.sha256(fingerprint(source).encode("utf-8")).hexdigest()[:32]


@functools.cache
def content_fingerprint(path: str, size: int, modified: int, whole: int) -> str:
    """What identifies a data file's content: its sha256, or for a larger file its size,
    line count and the sha256 of its first and last MiB (hashing gigabytes on every start would
    cost minutes). --resume checks that the data is what the run started with."""
    with open(path, "rb") as f:
        if size <= whole:
            digest = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
            return "sha256:" + digest.hexdigest()
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()
        f.seek(size - (1 << 20))
        tail = hashlib.sha256(f.read()).hexdigest()
        f.seek(0)
        lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))
    return f"size:{size} lines:{lines} head-sha256:{head} tail-sha256:{tail}"


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
