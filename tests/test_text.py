"""Text encoder: the bundled all-MiniLM-L6-v2, pooling, cache, fine-tuning hooks."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from recsys_core.dataset import Dataset
from recsys_core.errors import ModelLoadError, RecScopeError
from recsys_core.text import (
    CACHE_ENV_VAR,
    DEFAULT_MODEL_ID,
    TextEncoder,
    default_cache_dir,
    default_encoder,
    default_model_path,
    encode_items,
)

TEXTS = ["A cat sits on the mat.", "A kitten is resting on a rug.",
         "Quarterly tax filing deadlines for small businesses.", ""]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> TextEncoder:
    """Loaded once for the module (about 5 s on CPU); tests use cache-dir clones."""
    return TextEncoder(cache_dir=tmp_path_factory.mktemp("text-cache"), device="cpu")


@pytest.fixture
def fresh(encoder, tmp_path) -> TextEncoder:
    """The shared model with an empty cache of its own."""
    return encoder.with_cache_dir(tmp_path / "cache")


def count_forward_calls(monkeypatch, enc: TextEncoder) -> list[int]:
    calls = [0]
    original = enc.model.forward

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(enc.model, "forward", counting)
    return calls


def test_default_model_is_the_bundled_package(encoder):
    folder = default_model_path()
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert encoder.model_id == DEFAULT_MODEL_ID
    assert encoder.dim == 384
    assert encoder.max_length == 256


def test_shape_dtype_and_unit_norm(fresh):
    vectors = fresh.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == torch.float32 and vectors.device.type == "cpu"
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(len(TEXTS)))
    assert fresh.encode([]).shape == (0, 384)


def test_semantic_sanity(fresh):
    cat, kitten, tax, _ = fresh.encode(TEXTS)
    assert cat @ kitten > cat @ tax + 0.3
    assert cat @ kitten > kitten @ tax + 0.3


def test_matches_sentence_transformers(fresh):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(default_model_path()), device="cpu")
    expected = reference.encode(TEXTS, convert_to_tensor=True).cpu()
    torch.testing.assert_close(fresh.encode(TEXTS), expected, atol=1e-5, rtol=1e-4)


def test_deterministic_and_order_preserving(encoder, tmp_path):
    first = encoder.with_cache_dir(tmp_path / "a").encode(TEXTS)
    again = encoder.with_cache_dir(tmp_path / "b").encode(TEXTS)
    assert torch.equal(first, again)
    permuted = encoder.with_cache_dir(tmp_path / "c").encode(TEXTS[::-1])
    torch.testing.assert_close(permuted, first.flip(0), atol=1e-5, rtol=1e-5)
    # Padding inside a batch must not change a text's embedding (attention-mask pooling).
    alone = encoder.with_cache_dir(tmp_path / "d").encode([TEXTS[0]])
    torch.testing.assert_close(alone[0], first[0], atol=1e-5, rtol=1e-5)


def test_cache_second_call_encodes_nothing(fresh, monkeypatch):
    calls = count_forward_calls(monkeypatch, fresh)
    first = fresh.encode(TEXTS + [TEXTS[0]])  # a duplicate is encoded once
    assert calls[0] == 1
    assert fresh.stats.cache_misses == len(TEXTS) and fresh.stats.cache_hits == 0
    second = fresh.encode(TEXTS + [TEXTS[0]])
    assert calls[0] == 1
    assert torch.equal(first, second)
    assert fresh.stats.cache_hits == len(TEXTS)
    # Only the new text is encoded on a partial hit.
    fresh.reset_stats()
    fresh.encode([TEXTS[1], "Something completely new."])
    assert calls[0] == 2
    assert (fresh.stats.cache_hits, fresh.stats.cache_misses) == (1, 1)


def test_cache_files_are_safetensors_and_json(fresh):
    fresh.encode(TEXTS)
    folder = fresh.cache_dir / fresh.cache_key[:32]
    shards = list(folder.glob("*.safetensors"))
    assert len(shards) == 1
    index = json.loads((folder / "index.json").read_text())
    assert index["model_id"] == DEFAULT_MODEL_ID and index["dim"] == 384
    assert len(index["entries"]) == len(TEXTS)
    assert not [p for p in folder.iterdir() if p.suffix in {".pkl", ".pt", ".npy", ".tmp"}]


def test_damaged_cache_is_re_encoded(fresh, monkeypatch):
    expected = fresh.encode(TEXTS)
    folder = fresh.cache_dir / fresh.cache_key[:32]
    for shard in folder.glob("*.safetensors"):
        shard.write_bytes(b"not a safetensors file")
    calls = count_forward_calls(monkeypatch, fresh)
    torch.testing.assert_close(fresh.encode(TEXTS), expected)
    assert calls[0] == 1


def test_cache_can_be_disabled(encoder, tmp_path):
    enc = encoder.with_cache_dir(tmp_path / "off")
    enc.use_cache = False
    enc.encode(TEXTS)
    assert not (tmp_path / "off").exists()


def test_progress_callback(fresh):
    events = []
    fresh.batch_size = 2
    fresh.encode(TEXTS, on_progress=events.append)
    assert all(e["stage"] == "encode" and e["total"] == len(TEXTS) for e in events)
    done = [e["done"] for e in events]
    assert done == sorted(done) and done[0] == 0 and done[-1] == len(TEXTS)
    assert events[-1]["fraction"] == 1.0
    events.clear()
    fresh.encode(TEXTS, on_progress=events.append)  # all cached: one final event
    assert events == [{"stage": "encode", "done": 4, "total": 4, "fraction": 1.0}]


def test_encode_items(fresh):
    items = pd.DataFrame({"item_id": ["m1", "m2"], "title": ["Toy Story", "Heat"],
                          "description": ["", "A crime saga."],
                          "genre": [["Animation", "Comedy"], ["Crime"]]})
    interactions = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["m1", "m3"]})
    ds = Dataset(interactions, items, attribute_columns=["genre"])
    vectors = encode_items(ds, encoder=fresh)
    assert vectors.shape == (ds.num_items, 384)  # m3 only appears in interactions
    torch.testing.assert_close(vectors, fresh.encode(ds.item_texts()))


def test_bad_model_path_raises_clear_error(tmp_path):
    with pytest.raises(RecScopeError, match="Could not load the text encoder") as info:
        TextEncoder(tmp_path / "no-such-model", cache_dir=tmp_path)
    assert isinstance(info.value, ModelLoadError)
    assert "never downloads" in str(info.value)
    (tmp_path / "bin-only").mkdir()
    (tmp_path / "bin-only" / "config.json").write_text("{}")
    (tmp_path / "bin-only" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="safetensors"):
        TextEncoder(tmp_path / "bin-only", cache_dir=tmp_path)


def test_cache_dir_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    assert default_cache_dir() == tmp_path / "text"
    monkeypatch.delenv(CACHE_ENV_VAR)
    assert default_cache_dir().parts[-3:] == (".cache", "recscope", "text")


def test_trainable_top_layers_gradients(encoder):
    enc = copy.deepcopy(encoder)  # fine-tuning mutates; keep the module fixture pristine
    params = enc.trainable_top_layers(2)
    layers = enc.transformer_layers()
    top_ids = {id(p) for layer in list(layers)[-2:] for p in layer.parameters()}
    assert {id(p) for p in params} == top_ids
    loss = enc.encode_trainable(TEXTS[:2]).sum(dim=0).pow(2).sum()
    loss.backward()
    for name, param in enc.model.named_parameters():
        if id(param) in top_ids:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    assert enc.trainable_top_layers(0) == []
    with pytest.raises(ValueError):
        enc.trainable_top_layers(len(layers) + 1)


def test_trainable_encoder_bypasses_cache(encoder, tmp_path):
    enc = copy.deepcopy(encoder).with_cache_dir(tmp_path / "ft")
    enc.trainable_top_layers(1)
    enc.encode(TEXTS)
    assert not (tmp_path / "ft").exists()


def test_default_encoder_is_shared_and_read_only(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    default_encoder.cache_clear()
    try:
        enc = default_encoder()
        assert default_encoder() is enc
        with pytest.raises(RuntimeError, match="shared"):
            enc.trainable_top_layers(1)
    finally:
        default_encoder.cache_clear()


def test_seed_cache_is_read_but_never_written(fresh, tmp_path):
    seed = fresh.with_cache_dir(tmp_path / "seed")
    seed.encode(["alpha", "beta"])
    before = sorted(p.name for p in (tmp_path / "seed").rglob("*"))
    reader = fresh.with_cache_dir(tmp_path / "own")
    reader.seed_cache_dirs = (tmp_path / "seed",)
    out = reader.encode(["alpha", "beta", "gamma"])
    assert (reader.stats.cache_hits, reader.stats.cache_misses) == (2, 1)
    assert torch.allclose(out[:2], seed.encode(["alpha", "beta"]))
    assert sorted(p.name for p in (tmp_path / "seed").rglob("*")) == before  # untouched
    again = fresh.with_cache_dir(tmp_path / "own")
    again.encode(["gamma"])
    assert again.stats.cache_misses == 0  # the new text went to the writable cache


def test_shipped_demo_embeddings_match_the_demo_catalogue(fresh):
    """data/text_cache holds the demo items' embeddings, so the app's first start encodes
    nothing. Regenerate it after changing the demo items (see data/README.md)."""
    from recsys_core.ingest import load_dataset

    root = Path(__file__).resolve().parents[1] / "data"
    ds = load_dataset(root / "interactions.csv", root / "items.csv")
    reader = fresh.with_cache_dir(fresh.cache_dir)
    reader.seed_cache_dirs = (root / "text_cache",)
    shipped = encode_items(ds, encoder=reader)
    assert reader.stats.cache_misses == 0
    sample = [0, 1, ds.num_items - 1]
    texts = [ds.item_texts()[i] for i in sample]
    assert torch.allclose(shipped[sample], fresh.with_cache_dir(fresh.cache_dir / "x").encode(texts),
                          atol=1e-5)
