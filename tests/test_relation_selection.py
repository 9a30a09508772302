"""Side information that must pay: the flagship's relation groups, relation dropout in
training and their selection on validation (recsys_core.models.gnn_llm)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_core.dataset import Dataset
from recsys_core.models.gnn_llm import GNNLLMRecommender, relation_group


def friends_dataset(seed: int = 0) -> Dataset:
    """30 users, 24 items, a genre per item and friend edges; every item has interactions."""
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{i}") for u in range(30) for i in rng.choice(24, 8, replace=False)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(24)],
                          "title": [f"Item {i}" for i in range(24)],
                          "genre": [[["drama", "comedy", "horror"][i % 3]] for i in range(24)]})
    friends = pd.DataFrame({"src": [f"u{u}" for u in range(0, 30, 2)],
                            "dst": [f"u{u + 1}" for u in range(0, 30, 2)]})
    return Dataset(inter, items, attribute_columns=["genre"], user_edges=friends)


def flagship(**options) -> GNNLLMRecommender:
    text = torch.randn(24, 6, generator=torch.Generator().manual_seed(0))
    return GNNLLMRecommender(embedding_dim=8, heads=2, epochs=3, batch_size=64,
                             num_negatives=8, device="cpu", show_progress=False, seed=0,
                             item_text_embeddings=text, graph_filter=False, item_item=False,
                             **options)


def test_relation_groups_name_the_side_information():
    assert relation_group(("user", "rates", "item")) is None
    assert relation_group(("item", "rated_by", "user")) is None
    assert relation_group(("item", "has_genre", "genre")) == "genre"
    assert relation_group(("genre", "genre_of", "item")) == "genre"
    assert relation_group(("user", "has_user_age", "user_age")) == "user_age"
    assert relation_group(("user", "follows", "user")) == "user_edges"
    assert relation_group(("item", "similar", "item")) == "similar_items"


def test_groups_switch_off_and_relation_dropout_draws_from_the_job_generator():
    model = flagship(relation_selection=False).fit(ds := friends_dataset(), ds.interactions)
    module = model.module
    assert module.groups == ["genre", "user_edges"]
    everything = list(module.edge_types)
    module.set_group_active("genre", False)
    assert module.active_groups() == ["user_edges"]
    assert not any(relation_group(et) == "genre" for et in module.edge_types)
    assert len(module.edge_types) == len(everything) - 2
    with pytest.raises(KeyError, match="no-such"):
        module.set_group_active("no-such", False)
    module.set_group_active("genre", True)
    assert module.edge_types == everything

    # In training, each group is left out of a pass with probability relation_dropout,
    # drawn from the module's own generator (same seed, same passes); never in eval mode.
    module.relation_dropout = 0.5
    module.train()
    kept = []
    for seed in (0, 0, 1):
        module.generator = torch.Generator().manual_seed(seed)
        kept.append([sorted({relation_group(et) for et in module.edge_index_dict()} - {None})
                     for _ in range(20)])
    module.generator = None
    assert kept[0] == kept[1] and kept[0] != kept[2]
    assert any(len(k) < 2 for k in kept[0]) and any(len(k) == 2 for k in kept[0])
    module.eval()
    assert set(module.edge_index_dict()) == set(everything)


def test_selection_keeps_only_groups_that_pay_and_the_run_keeps_the_choice(tmp_path):
    from recsys_core.run import load_run, save_run

    ds = friends_dataset()
    model = flagship(relation_dropout=0.3).fit(ds, ds.interactions)
    chosen = model.train_result.selected["relations"]
    assert sorted(chosen["kept"] + chosen["dropped"]) == ["genre", "user_edges"]
    assert chosen["kept"] == model.module.active_groups()
    assert chosen["dropped"] == model.inactive_groups
    # Greedy in name order: a group goes when the score without it is no worse than the
    # best so far, and the recorded validation NDCG is the one of the groups kept.
    best = chosen["valid_ndcg_all"]
    for group in ("genre", "user_edges"):
        without = chosen["valid_ndcg_without"][group]
        assert (group in chosen["dropped"]) == (without >= best)
        best = max(best, without)
    assert chosen["valid_ndcg"] == pytest.approx(best)
    for group in chosen["dropped"]:
        assert not any(relation_group(et) == group for et in model.module.edge_types)

    run_dir = save_run(tmp_path / "run", model, ds, ds.interactions)
    loaded, _, _ = load_run(run_dir)
    assert loaded.module.active_groups() == model.module.active_groups()
    assert loaded.inactive_groups == model.inactive_groups
    users = np.arange(ds.num_users)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)


def test_a_switched_off_group_changes_scores_and_leaves_the_explanations():
    from recsys_core.explain import explain

    ds = friends_dataset()
    model = flagship(relation_selection=False).fit(ds, ds.interactions)
    item = model.recommend(["u0"], k=1)["item_id"].iloc[0]
    before = model.score(np.arange(5))
    model.inactive_groups = ["genre"]
    model.after_training()
    model._finalize()
    assert not np.allclose(model.score(np.arange(5)), before)
    result = explain(model, ds, user_id="u0", item_id=item, method="shap")
    kinds = set(result.contributions["kind"])
    assert "history_item" in kinds and "attribute" not in kinds


def test_a_run_saved_before_relation_selection_loads_with_every_group_on(tmp_path):
    """Runs written before the ``group_active`` buffer existed still load (groups all on);
    any other missing tensor is still refused."""
    import hashlib
    import json

    from safetensors.torch import load_file, save_file

    from recsys_core.errors import ModelLoadError
    from recsys_core.run import load_run, save_run

    ds = friends_dataset()
    model = flagship(relation_selection=False).fit(ds, ds.interactions)
    run_dir = save_run(tmp_path / "run", model, ds, ds.interactions)

    def drop_tensor(name: str) -> None:  # rewrite the run as an older version wrote it
        path, info_path = run_dir / "model.safetensors", run_dir / "run.json"
        tensors = load_file(path)
        del tensors[name]
        save_file(tensors, path)
        info = json.loads(info_path.read_text())
        info["tensors"].pop(name)
        info["files"]["model.safetensors"] = {
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "bytes": path.stat().st_size}
        info_path.write_text(json.dumps(info))

    drop_tensor("group_active")
    loaded, _, _ = load_run(run_dir)
    assert loaded.module.active_groups() == ["genre", "user_edges"]
    assert loaded.inactive_groups == []
    users = np.arange(ds.num_users)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    drop_tensor("item_id.weight")
    with pytest.raises(ModelLoadError):
        load_run(run_dir)
