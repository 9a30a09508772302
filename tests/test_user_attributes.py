"""User attributes end to end: the users file (MovieLens ``u.user`` and CSV with a header),
user attribute nodes in the graph, the flagship using them (fit, recommend, explain, save/load)
and ``train --users F`` on the command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_core.cli import main
from recsys_core.dataset import Dataset
from recsys_core.graph import (
    build_hetero_graph,
    graph_summary,
    k_hop_networkx,
    user_attribute_edge_types,
    user_attribute_node_type,
)
from recsys_core.ingest import load_dataset
from recsys_core.ingest.users import bin_numeric, classify_user_column
from recsys_core.models.gnn_llm import GNNLLMRecommender
from recsys_core.run import USER_FEATURES_FILE

#: ``u.user`` lines for the tiny users u1..u8 plus u9, who has no interactions.
U_USER = "".join(f"u{k}|{age}|{sex}|{job}|{zip_code}\n" for k, age, sex, job, zip_code in [
    (1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"),
    (3, 23, "M", "writer", "32067"), (4, 24, "M", "technician", "43537"),
    (5, 33, "F", "other", "15213"), (6, 42, "M", "executive", "98101"),
    (7, 57, "M", "administrator", "91344"), (8, 36, "M", "administrator", "05201"),
    (9, 29, "F", "student", "01002"), (10, 61, "F", "writer", "V3N4P"),
    (11, 45, "M", "student", "L9G2B"), (12, 19, "F", "other", "E2A4H")])


@pytest.fixture
def u_user(write_file):
    return write_file("u.user", U_USER)


# ---------------------------------------------------------------------------- ingestion
def test_movielens_u_user_is_detected_binned_and_counted(tiny_files, u_user):
    ds = load_dataset(tiny_files["interactions"], users=u_user)
    report = ds.report
    file = report.file("users")
    assert file.format == "movielens u.user" and not file.header
    assert ds.user_attribute_columns == ["age", "gender", "occupation"]
    assert "zip_code" in file.ignored_columns  # an identifier, reported
    assert file.mapping["attributes"]["age"] == \
        "numeric, 5 quantile bins: 19-24, 29, 33-36, 42-45, 53-61"
    ages = ds.users.set_index("user_id")["age"]
    assert ages["u3"] == "19-24" and ages["u10"] == ages["u7"] == "53-61"
    assert ds.users["age"].nunique() == 5
    # u9..u12 have no interactions: kept, counted, added to the users.
    assert report.problem_counts()["metadata_only_users"] == 4
    assert ds.num_users == 12 and report.counts["users_with_attributes"] == 12
    assert report.counts["user_attribute_values"] == {"age": 5, "gender": 2, "occupation": 6}
    text = report.to_text()
    assert "ignored column 'zip_code'" in text and "quantile bins" in text


def test_csv_with_header_and_bad_rows(tiny_files, write_file):
    users = write_file("people.csv", "\n".join([
        "userId,age,gender,occupation,email,zip",
        "u1,24,M,technician,a@x.org,85711",
        "u2,abc,F,other,b@x.org,94043",         # an age that is not a number
        "u3,31,M,writer,c@x.org,32067,extra",   # ragged: more fields than the header
        ",40,F,writer,d@x.org,11111",           # no user id
        "u1,50,F,other,e@x.org,22222",          # duplicate: the first row wins
        "ghost,35,M,other,f@x.org,33333",       # not in the interactions
        "u4,,M,technician,g@x.org,44444",       # a missing age: no age node, user kept
        "u5,46,F,technician,h@x.org,55555",
    ]) + "\n")
    ds = load_dataset(tiny_files["interactions"], users=users)
    counts = ds.report.problem_counts()
    assert counts["invalid_user_values"] == 1 and counts["ragged_rows"] == 1
    assert counts["empty_user_ids"] == 1 and counts["duplicate_user_rows"] == 1
    assert counts["metadata_only_users"] == 1  # ghost
    invalid = next(p for p in ds.report.problems if p.code == "invalid_user_values")
    assert "column 'age'" in invalid.examples[0] and "'abc'" in invalid.examples[0]
    file = ds.report.file("users")
    assert file.mapping["user id"] == "userId"
    assert set(file.ignored_columns) == {"email", "zip"}
    rows = ds.users.set_index("user_id")
    assert ds.user_attribute_columns == ["age", "gender", "occupation"]
    assert rows.loc["u1", "occupation"] == "technician"  # first of the duplicates
    assert pd.isna(rows.loc["u2", "age"]) and pd.isna(rows.loc["u4", "age"])
    assert rows.loc["u2", "gender"] == "F"


def test_a_users_file_without_an_id_column_is_an_error(tiny_files, write_file):
    from recsys_core.errors import DataError

    users = write_file("users.csv", "age,gender\n24,M\n31,F\n")
    with pytest.raises(DataError, match="users.csv.*no user id column"):
        load_dataset(tiny_files["interactions"], users=users)


@pytest.mark.parametrize("column, values, kind", [
    ("zip_code", ["85711", "94043"], "ignored"),
    ("postcode", [f"{k:05d}" for k in range(20)], "ignored"),
    ("code", [f"{k:05d}" for k in range(20)], "ignored"),  # fixed-width digit codes
    ("nickname", [f"name {k}" for k in range(20)], "ignored"),  # mostly unique text
    ("plan", ["free", "free"], "ignored"),  # a single value
    ("age", ["24", "53", "31"], "numeric"),
    ("gender", ["M", "F", "M", "F"], "categorical"),
])
def test_classify_user_column(column, values, kind):
    assert classify_user_column(column, pd.Series(values))[0] == kind


def test_bin_numeric_keeps_codes_and_bins_quantities():
    codes, how, invalid = bin_numeric(pd.Series(["0", "4", "20", "4", None], name="occupation"))
    assert codes == ["0", "4", "20", "4", None] and "codes" in how and not invalid.any()
    ages = pd.Series([str(a) for a in range(18, 68)], name="age")
    labels, how, _ = bin_numeric(ages)
    assert len(set(labels)) == 5 and labels[0] == "18-27" and labels[-1] == "58-67"
    assert how == "numeric, 5 quantile bins: 18-27, 28-37, 38-47, 48-57, 58-67"


# ---------------------------------------------------------------------------- graph
def test_graph_has_user_attribute_nodes_both_ways(tiny_dataset):
    data = build_hetero_graph(tiny_dataset)
    assert data.user_attr_columns == {"user_age_group": "age_group", "user_country": "country"}
    assert set(data.attr_columns) == {"genres", "category"}  # item attributes unchanged
    fwd, rev = user_attribute_edge_types("user_country")
    assert fwd == ("user", "has_user_country", "user_country")
    assert sorted(data["user_country"].node_ids) == ["DE", "FR"]
    ei = data[fwd].edge_index
    assert ei.size(1) == 8 and torch.equal(data[rev].edge_index, ei.flip(0))
    u2 = int(tiny_dataset.user_idx("u2")[0])
    value = data["user_country"].node_ids[int(ei[1][ei[0] == u2][0])]
    assert value == tiny_dataset.users.set_index("user_id").loc["u2", "country"]
    summary = graph_summary(data)
    assert "user_age_group" in set(summary["nodes"]["node_type"])
    # The Graph page's neighbourhood shows them, one edge per user-value pair.
    g = k_hop_networkx(data, "user", u2, num_hops=1, max_nodes=50)
    types = {d["node_type"] for _, d in g.nodes(data=True)}
    assert {"user_age_group", "user_country"} <= types
    relations = [d["relation"] for _, _, d in g.edges(data=True)]
    assert relations.count("has_user_country") == 1 and "user_country_of" not in relations
    off = build_hetero_graph(tiny_dataset, include_user_attributes=False)
    assert off.user_attr_columns == {} and "user_country" not in off.node_types


def test_user_attribute_types_never_meet_item_attribute_types(tiny_dataset):
    assert user_attribute_node_type("Age Group") == "user_age_group"
    items = tiny_dataset.items.rename(columns={"category": "user country"})
    ds = Dataset(tiny_dataset.interactions, items, ["genres", "user country"],
                 users=tiny_dataset.users)
    data = build_hetero_graph(ds)
    assert data.attr_columns["user_country"] == "user country"
    assert data.user_attr_columns["user_country_2"] == "country"


# ---------------------------------------------------------------------------- flagship
def flagship(**options) -> GNNLLMRecommender:
    # After two epochs on tiny data validation would switch side information off; these
    # tests are about how it is used, so keep every group.
    options.setdefault("relation_selection", False)
    return GNNLLMRecommender(embedding_dim=8, heads=2, epochs=2, batch_size=64,
                             num_negatives=8, device="cpu", show_progress=False, seed=0,
                             **options)


def test_flagship_uses_user_attributes_and_round_trips(tiny_dataset, tmp_path):
    from recsys_core.run import load_run, save_run

    gen = torch.Generator().manual_seed(0)
    text = torch.randn(tiny_dataset.num_items, 12, generator=gen)
    model = flagship(item_text_embeddings=text).fit(tiny_dataset, tiny_dataset.interactions)
    relations = model.module.edge_types
    for node_type in ("user_age_group", "user_country"):
        fwd, rev = user_attribute_edge_types(node_type)
        assert fwd in relations and rev in relations
        assert model.module.node_counts[node_type] == len(set(tiny_dataset.users[
            {"user_age_group": "age_group", "user_country": "country"}[node_type]]))
    recs = model.recommend(k=3)
    assert len(recs) == 3 * tiny_dataset.num_users and np.isfinite(recs["score"]).all()
    # The attribute nodes change users' scores: removing a user's edges moves them.
    data = model.graph()
    fwd, rev = user_attribute_edge_types("user_country")
    u = int(tiny_dataset.user_idx("u1")[0])
    for et in (fwd, rev):
        ei = data[et].edge_index
        keep = (ei[0] != u) if et == fwd else (ei[1] != u)
        data[et].edge_index = ei[:, keep]
    before = model.score([u])
    assert not np.allclose(model.score_with_graph(data, [u]), before)

    run_dir = save_run(tmp_path / "run", model, tiny_dataset, tiny_dataset.interactions)
    loaded, dataset, _ = load_run(run_dir)
    assert dataset.user_attribute_columns == ["age_group", "country"]
    assert loaded.module.edge_types == relations
    users = np.arange(tiny_dataset.num_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))

    off = flagship(item_text_embeddings=text, use_user_features=False).fit(
        tiny_dataset, tiny_dataset.interactions)
    assert not any("user_country" in et for et in map("".join, off.module.edge_types))


def test_explanations_cover_user_attribute_messages(tiny_dataset):
    from recsys_core.explain import attention_explanation
    from recsys_core.explain.engine import flagship_engine

    gen = torch.Generator().manual_seed(1)
    text = torch.randn(tiny_dataset.num_items, 12, generator=gen)
    model = flagship(item_text_embeddings=text).fit(tiny_dataset, tiny_dataset.interactions)
    engine = flagship_engine(model)
    assert engine.exact_incremental
    user = int(tiny_dataset.user_idx("u1")[0])
    np.testing.assert_allclose(engine.scores(user, np.arange(tiny_dataset.num_items)),
                               model.score([user])[0], atol=1e-5)
    assert engine.attribute_nodes["user_country"][0] == "country"
    item = str(model.recommend(["u1"], k=1)["item_id"].iloc[0])
    result = attention_explanation(model, tiny_dataset, "u1", item)
    frame = result.contributions
    assert {"user_age_group", "user_country"} <= set(frame["node_type"])
    country = tiny_dataset.users.set_index("user_id").loc["u1", "country"]
    assert f"country: {country}" in set(frame["label"])
    assert abs(result.details["residual"]) < 1e-4


# ---------------------------------------------------------------------------- CLI
def test_cli_train_with_users_and_a_param(tiny_files, u_user, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", "--interactions", str(tiny_files["interactions"]), "--items",
                 str(tiny_files["items"]), "--users", str(u_user), "--epochs", "1",
                 "--param", "item_item=false", "--param", "embedding_dim=8",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "metadata only users 4" in err
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["item_item"] is False and info["extra"]["inputs"]["users"]
    assert USER_FEATURES_FILE in info["files"]  # the run keeps the users' attributes
    recs = tmp_path / "recs.csv"
    assert main(["recommend", "--run", str(out), "--k", "2", "--out", str(recs)]) == 0
    assert len(pd.read_csv(recs)) == 2 * 12


def test_cli_validate_reports_users(tiny_files, u_user, capsys):
    assert main(["validate", "--interactions", str(tiny_files["interactions"]),
                 "--users", str(u_user), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    users = next(f for f in report["files"] if f["role"] == "users")
    assert set(users["mapping"]["attributes"]) == {"age", "gender", "occupation"}
    assert report["counts"]["user_attribute_values"]["gender"] == 2
