"""What a model's own files say: its config.json and chat template, read with the standard library.

``base_model`` is a Hugging Face id or a local folder. When it is a local folder, or a Hub id whose
files are already in the local Hugging Face cache, its ``config.json`` (``model_type``,
``architectures`` and the shapes ``mhgen plan`` needs) and its tokenizer's chat template are read
here. Nothing is downloaded and no library but the standard one is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType


@dataclass(frozen=True)
class ModelFiles:
    where: str  # "a local folder" or "the Hugging Face cache"
    folder: str  # where they were read; never written into a script (it differs per machine)
    config: MappingProxyType  # config.json
    config_sha256: str
    chat_template: str | None  # the tokenizer's own template, when it has one
    chat_template_sha256: str | None

    @property
    def local(self) -> bool:
        return self.where == "a local folder"

    @property
    def model_type(self) -> str:
        value = self.config.get("model_type")
        return value if isinstance(value, str) else ""


class ModelFilesError(Exception):
    """A model folder whose config.json cannot be read; the message says why."""


def find(base_model: str) -> ModelFiles | None:
    """The model's files, from a local folder or the local Hugging Face cache; None when neither
    has them (a Hub id not downloaded yet: the name alone decides then)."""
    try:
        local = Path(base_model).expanduser()
        if (local / "config.json").is_file():
            return _read(local, "a local folder")
        snapshot = _cached_snapshot(base_model)
        if snapshot is not None and (snapshot / "config.json").is_file():
            return _read(snapshot, "the Hugging Face cache")
    except (OSError, ValueError, RuntimeError):  # no path this system can have (NUL, too long)
        pass
    return None


def hub_cache() -> Path:
    """The Hugging Face hub cache, found the way huggingface_hub finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "huggingface" / "hub"


def _cached_snapshot(repo_id: str) -> Path | None:
    parts = repo_id.strip("/").split("/")
    if not 1 <= len(parts) <= 2 or not all(parts) or any(p in (".", "..") for p in parts):
        return None
    repo = hub_cache() / ("models--" + "--".join(parts))
    try:
        revision = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    snapshot = repo / "snapshots" / revision
    return snapshot if revision and snapshot.is_dir() else None


def _read(folder: Path, where: str) -> ModelFiles:
    path = folder / "config.json"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelFilesError(
            f"{path}: cannot read the model's config.json ({exc.strerror})"
        ) from None
    try:
        config = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFilesError(
            f"{path}: the model's config.json is not valid JSON ({exc})"
        ) from None
    if not isinstance(config, dict):
        raise ModelFilesError(f"{path}: the model's config.json is not a JSON object")
    template = _chat_template(folder)
    return ModelFiles(
        where=where,
        folder=str(folder),
        config=MappingProxyType(config),
        config_sha256=hashlib.sha256(raw).hexdigest(),
        chat_template=template,
        chat_template_sha256=hashlib.sha256(template.encode()).hexdigest() if template else None,
    )


def _chat_template(folder: Path) -> str | None:
    """The tokenizer's chat template: chat_template.jinja, else tokenizer_config.json's
    ``chat_template`` (a string, or a list of named templates whose "default" one is used)."""
    try:
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template else None
