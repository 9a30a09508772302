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
    drop_tensor("cold_group_active")
    loaded, _, _ = load_run(run_dir)
    assert loaded.module.active_groups() == ["genre", "user_edges"]
    assert loaded.inactive_groups == [] and loaded.cold_inactive_groups == []
    users = np.arange(ds.num_users)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    drop_tensor("item_id.weight")
    with pytest.raises(ModelLoadError):
        load_run(run_dir)


def cold_items_dataset() -> Dataset:
    """:func:`friends_dataset` with items i20-i23 left without interactions (cold)."""
    ds = friends_dataset()
    inter = ds.interactions[["user_id", "item_id"]]
    inter = inter[~inter["item_id"].isin([f"i{i}" for i in range(20, 24)])]
    return Dataset(inter.reset_index(drop=True), ds.items, attribute_columns=["genre"],
                   user_edges=ds.user_edges)


def test_a_group_switched_off_for_cold_items_changes_only_their_scores():
    from recsys_core.explain import explain

    ds = cold_items_dataset()
    model = flagship(relation_selection=False).fit(ds, ds.interactions)
    module = model.module
    assert module.cold_item_groups == ["genre"]  # user-user edges do not reach items
    with pytest.raises(KeyError, match="user_edges"):
        module.set_cold_group_active("user_edges", False)
    cold = ds.item_idx([f"i{i}" for i in range(20, 24)])
    warm = np.setdiff1d(np.arange(ds.num_items), cold)
    users = np.arange(ds.num_users)
    before = model.score(users)
    new_text = module.item_text[cold].numpy()
    new_with_genre = model.score_new_items(new_text, [{"genre": ["drama"]}] * len(cold))

    model.cold_inactive_groups = ["genre"]
    model.after_training()
    model._finalize()
    assert module.cold_inactive_groups() == ["genre"]
    after = model.score(users)
    np.testing.assert_allclose(after[:, warm], before[:, warm], rtol=1e-5, atol=1e-6)
    assert not np.allclose(after[:, cold], before[:, cold])
    # No genre edge reaches a cold item any more; warm items keep theirs.
    genre_edges = [ei for et, ei in module.edge_index_dict().items()
                   if relation_group(et) == "genre" and et[2] == "item"]
    targets = torch.cat([ei[1] for ei in genre_edges])
    assert not np.isin(targets.numpy(), cold).any() and np.isin(targets.numpy(), warm).any()
    graph = model.graph()
    for et in graph.edge_types:
        if relation_group(tuple(et)) == "genre" and et[2] == "item":
            assert not np.isin(graph[et].edge_index[1].numpy(), cold).any()
    np.testing.assert_allclose(model.score_with_graph(graph, users), after, rtol=1e-5,
                               atol=1e-5)
    # A brand-new item is scored as a cold catalogue item: its genre no longer counts.
    new_off = model.score_new_items(new_text, [{"genre": ["drama"]}] * len(cold))
    np.testing.assert_allclose(new_off, model.score_new_items(new_text), rtol=1e-5, atol=1e-5)
    assert not np.allclose(new_off, new_with_genre)
    # Explanations of a cold item run on the same graph: no attribute evidence left.
    result = explain(model, ds, user_id="u0", item_id="i21", method="shap")
    assert "attribute" not in set(result.contributions["kind"])


def test_cold_selection_judges_groups_on_pseudo_cold_items_and_the_run_keeps_it(tmp_path):
    from recsys_core.run import load_run, save_run

    ds = cold_items_dataset()
    model = flagship(relation_dropout=0.3).fit(ds, ds.interactions)
    warm_kept = [g for g in model.module.cold_item_groups
                 if g in model.module.active_groups()]
    chosen = model.train_result.selected.get("cold_relations")
    if not warm_kept:  # nothing left to judge for cold items
        assert chosen is None
        pytest.skip("warm selection dropped every group into items on this toy")
    assert sorted(chosen["kept"] + chosen["dropped"]) == warm_kept
    assert chosen["dropped"] == model.cold_inactive_groups == model.module.cold_inactive_groups()
    assert chosen["held_out_items"] == round(0.1 * 20) and chosen["users"] > 0
    best = chosen["valid_ndcg_all"]
    for group in warm_kept:
        without = chosen["valid_ndcg_without"][group]
        assert (group in chosen["dropped"]) == (without >= best)
        best = max(best, without)
    assert chosen["valid_ndcg"] == pytest.approx(best)
    # The pseudo-cold graph is put back: the model scores over every training pair.
    assert model.module.users.numel() == len(model.train_interactions.drop_duplicates(
        ["user_idx", "item_idx"]))

    run_dir = save_run(tmp_path / "run", model, ds, ds.interactions)
    loaded, _, _ = load_run(run_dir)
    assert loaded.cold_inactive_groups == model.cold_inactive_groups
    users = np.arange(ds.num_users)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)
