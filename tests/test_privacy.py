"""Privacy mode (recsys_core.privacy): salted pseudonyms, small-group suppression, the CLI's
``--privacy`` and the app's switch."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from conftest import faithfulness_view
from streamlit.testing.v1 import AppTest
from test_app_pages import ROOT, TIMEOUT, assert_clean, tiny_workspace

from recscope_ui import ui
from recsys_core.cli import main
from recsys_core.errors import DataError, RecScopeError
from recsys_core.explain import explain, rationale
from recsys_core.privacy import (
    DEFAULT_MIN_GROUP_USERS,
    PRIVACY_SALT_ENV,
    PrivacyError,
    Pseudonymizer,
    pseudonymize_dataset,
    pseudonymize_explanation,
    pseudonymize_file_name,
    pseudonymize_user_table,
    suppress_small_groups,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py

SALT = b"a test salt, 32 bytes long......"
PSEUDONYM = re.compile(r"u_[0-9a-f]{16}")
IDS = ["alice@example.org", "user-12345", "42", "Bob Smith", "ü-7"]


# ---------------------------------------------------------------------------------- pseudonyms
def test_pseudonyms_are_stable_within_a_salt_and_differ_across_salts():
    a, b = Pseudonymizer(SALT), Pseudonymizer(SALT)
    other = Pseudonymizer(b"another salt of enough length!!")
    for user in IDS:
        assert PSEUDONYM.fullmatch(a.pseudonym(user))
        assert a.pseudonym(user) == b.pseudonym(user)
        assert a.pseudonym(user) != other.pseudonym(user)
    assert len(set(a.pseudonyms(IDS))) == len(IDS)
    assert a.pseudonym(42) == a.pseudonym("42")
    assert Pseudonymizer.random().pseudonym("x") != Pseudonymizer.random().pseudonym("x")


def test_pseudonyms_hide_the_raw_id_and_the_salt():
    p = Pseudonymizer(SALT)
    for user in IDS:
        fake = p.pseudonym(user)
        assert user not in fake and user.lower() not in fake
        assert SALT.hex()[:8] not in fake
    # Not a plain (unkeyed) hash of the id either.
    import hashlib

    assert hashlib.sha256(b"42").hexdigest()[:16] not in p.pseudonym("42")
    assert SALT.decode() not in repr(p) and SALT.hex() not in repr(p) and "<hidden>" in repr(p)
    assert SALT.decode() not in str(vars(p) if hasattr(p, "__dict__") else "")
    with pytest.raises(TypeError):
        pickle.dumps(p)


def test_salts_are_checked_and_read_from_the_environment():
    with pytest.raises(PrivacyError, match="at least 16"):
        Pseudonymizer(b"short")
    with pytest.raises(PrivacyError):
        Pseudonymizer("a text salt that is long enough")  # type: ignore[arg-type]
    env = {PRIVACY_SALT_ENV: "a shared salt for several commands"}
    assert (Pseudonymizer.from_environment(env).pseudonym("u1")
            == Pseudonymizer.from_environment(env).pseudonym("u1"))
    assert (Pseudonymizer.from_environment({}).pseudonym("u1")
            != Pseudonymizer.from_environment({}).pseudonym("u1"))
    with pytest.raises(RecScopeError):
        Pseudonymizer.from_environment({PRIVACY_SALT_ENV: "too short"})


def test_apply_returns_a_copy_with_pseudonyms():
    p = Pseudonymizer(SALT)
    frame = pd.DataFrame({"user_id": ["a", None, "b", "a"], "item_id": ["i1", "i2", "a", "i4"],
                          "score": [1.0, 2.0, 3.0, 4.0]})
    before = frame.copy()
    out = p.apply(frame)
    assert frame.equals(before)  # input untouched
    assert out["user_id"].iloc[0] == out["user_id"].iloc[3] == p.pseudonym("a")
    assert pd.isna(out["user_id"].iloc[1])
    assert list(out["item_id"]) == list(frame["item_id"])  # item ids are kept
    assert list(out["score"]) == list(frame["score"])
    with pytest.raises(DataError, match="uid"):
        p.apply(frame, columns=("uid",))


# ---------------------------------------------------------------------------------- k suppression
def test_small_groups_are_dropped_or_masked():
    table = pd.DataFrame({"slice": ["all", "cold items", "tiny", "unknown"],
                          "users": [120, 5, 3, np.nan], "recall": [0.3, 0.2, 0.9, 0.1]})
    kept, suppressed = suppress_small_groups(table, "users")
    assert DEFAULT_MIN_GROUP_USERS == 5
    assert list(kept["slice"]) == ["all", "cold items"] and suppressed == 2
    kept, suppressed = suppress_small_groups(table, "users", min_users=10)
    assert list(kept["slice"]) == ["all"] and suppressed == 3
    masked, suppressed = suppress_small_groups(table, "users", how="mask", keep=["slice"])
    assert suppressed == 2 and list(masked["slice"]) == list(table["slice"])
    assert masked.loc[2, ["users", "recall"]].isna().all()
    assert masked.loc[0, "recall"] == 0.3
    with pytest.raises(DataError, match="n_users"):
        suppress_small_groups(table, "n_users")
    with pytest.raises(ValueError):
        suppress_small_groups(table, "users", min_users=0)
    with pytest.raises(ValueError):
        suppress_small_groups(table, "users", how="blur")


# ---------------------------------------------------------------------------------- tables
def test_user_tables_and_file_names():
    p = Pseudonymizer(SALT)
    known = {"u1": 0, "u2": 1}
    edges = pseudonymize_user_table(pd.DataFrame({"src": ["u1"], "dst": ["u2"]}), p, known)
    assert list(edges.iloc[0]) == [p.pseudonym("u1"), p.pseudonym("u2")]
    stats = pd.DataFrame({"src": ["user", "item"], "dst": ["item", "genre"], "edges": [3, 4]})
    assert pseudonymize_user_table(stats, p, known).equals(stats)  # node types, not users
    nodes = pd.DataFrame({"type": ["user", "item"], "id": ["u1", "i1"],
                          "label": ["user u1", "Book"]})
    out = pseudonymize_user_table(nodes, p, known)
    assert list(out["id"]) == [p.pseudonym("u1"), "i1"]
    assert list(out["label"]) == [f"user {p.pseudonym('u1')}", "Book"]
    name = pseudonymize_file_name("history_u1.csv", p, known)
    assert name == f"history_{p.pseudonym('u1')}.csv"
    assert pseudonymize_file_name("runs.csv", p, known) == "runs.csv"


# ---------------------------------------------------------------------------------- explanations
def raw_user_ids(ds) -> list[str]:
    return [str(u) for u in ds.user_ids]


def assert_no_raw_user(text: str, ds) -> None:
    for user in raw_user_ids(ds):
        assert not re.search(rf"(?<![\w]){re.escape(user)}(?![\w])", text), user


@pytest.mark.parametrize("method", ["attention", "shap"])
def test_explanations_and_rationales_in_privacy_mode(explain_ds, flagship, method):
    p = Pseudonymizer(SALT)
    options = {"max_text": 0, "npermutations": 1} if method == "shap" else {}
    raw = explain(flagship, explain_ds, "u00", "i03", method=method, **options)
    assert (raw.contributions["node_type"] == "user").any(), "the user's neighbour u03"
    private = pseudonymize_explanation(raw, p)
    private_ds = pseudonymize_dataset(explain_ds, p)
    text = json.dumps(private.to_dict(rationale=rationale(private, private_ds)))
    assert_no_raw_user(text, explain_ds)
    assert private.user_id == p.pseudonym("u00")
    neighbour = private.contributions[private.contributions["node_type"] == "user"]
    assert set(neighbour["id"]) <= set(p.pseudonyms(explain_ds.user_ids))
    assert np.array_equal(private.contributions["weight"], raw.contributions["weight"])
    for key in ("features", "edges"):
        if key in private.details:
            assert_no_raw_user(private.details[key].to_csv(), explain_ds)
    if method == "shap":
        assert_no_raw_user(" ".join(private.details["shap"].feature_names), explain_ds)
    # The raw rationale names what the private one names, with pseudonyms for users.
    raw_text = rationale(raw, explain_ds)
    for user in raw_user_ids(explain_ds):
        raw_text = re.sub(rf"(?<![\w]){re.escape(user)}(?![\w])", p.pseudonym(user), raw_text)
    assert rationale(private, private_ds) == raw_text




def test_recommend_privacy_writes_no_raw_ids(explain_ds, flagship_run_dir, tmp_path, monkeypatch):
    salt = "a shared salt for two commands!"
    monkeypatch.setenv(PRIVACY_SALT_ENV, salt)
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--run", str(flagship_run_dir), "--k", "3", "--out", str(out),
                 "--privacy"]) == 0
    text = out.read_text()
    assert salt not in text
    frame = pd.read_csv(out, dtype=str)
    p = Pseudonymizer(salt.encode())
    assert set(frame["user_id"]) == set(p.pseudonyms(explain_ds.user_ids))
    assert_no_raw_user(frame["user_id"].str.cat(sep=" "), explain_ds)
    assert set(frame["item_id"]) <= set(explain_ds.item_ids)  # items are kept
    # Stable across commands with the shared salt, fresh without it.
    again = tmp_path / "again.csv"
    main(["recommend", "--run", str(flagship_run_dir), "--k", "3", "--out", str(again),
          "--privacy"])
    assert again.read_text() == text
    monkeypatch.delenv(PRIVACY_SALT_ENV)
    fresh = tmp_path / "fresh.csv"
    main(["recommend", "--run", str(flagship_run_dir), "--k", "3", "--out", str(fresh),
          "--privacy"])
    assert set(pd.read_csv(fresh, dtype=str)["user_id"]).isdisjoint(frame["user_id"])


def test_explain_privacy_prints_no_raw_ids(explain_ds, flagship_run_dir, capsys, monkeypatch):
    salt = "another shared salt, long enough"
    monkeypatch.setenv(PRIVACY_SALT_ENV, salt)
    code = main(["explain", "--run", str(flagship_run_dir), "--user", "u00", "--item", "i03",
                 "--method", "lime", "--samples", "60", "--top", "20", "--privacy"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert salt not in out and salt not in err
    payload = json.loads(out)
    assert payload["user"] == Pseudonymizer(salt.encode()).pseudonym("u00")
    assert_no_raw_user(out, explain_ds)
    assert any(c["kind"] == "history_item" for c in payload["contributions"])  # items kept
    monkeypatch.setenv(PRIVACY_SALT_ENV, "short")
    assert main(["explain", "--run", str(flagship_run_dir), "--user", "u00", "--item", "i03",
                 "--privacy"]) == 2
    assert PRIVACY_SALT_ENV in capsys.readouterr()[1]


# ---------------------------------------------------------------------------------- app
@pytest.fixture(scope="module")
def workspace():
    return tiny_workspace()


def test_workspace_salt_is_per_workspace_and_not_shown(workspace):
    other = tiny_workspace(models=())
    assert workspace.pseudonymizer.pseudonym("u1") != other.pseudonymizer.pseudonym("u1")
    assert "pseudonymizer" not in repr(workspace)


def test_privacy_switch_in_the_sidebar(workspace):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = workspace
    at.run()
    assert_clean(at)
    switch = at.sidebar.toggle(key=ui.PRIVACY_KEY)
    assert switch.label == "Privacy mode" and switch.value is False
    switch.set_value(True).run()
    assert_clean(at)
    assert at.session_state[ui.PRIVACY_KEY] is True
    at.switch_page("pages/recommendations.py").run()
    assert_clean(at)
    shown = [s for s in at.selectbox if s.value in set(workspace.dataset.user_ids)]
    assert shown, "a user picker"
    picker = shown[0]
    fake = workspace.pseudonymizer.pseudonym(picker.value)
    assert fake in picker.format_func(picker.value)  # labels use pseudonyms
    assert picker.value not in picker.format_func(picker.value).split()


def test_privacy_mode_on_the_explain_page_and_its_downloads(workspace, monkeypatch):
    import streamlit as st

    downloads: dict[str, tuple[str, str]] = {}
    real = st.download_button

    def record(label, data, file_name=None, **kwargs):
        text = data.decode("utf-8") if isinstance(data, bytes) else str(data)
        downloads[label] = (file_name, text)
        return real(label, data, file_name=file_name, **kwargs)

    monkeypatch.setattr(st, "download_button", record)
    at = faithfulness_view(workspace, "gnn-llm #2", 3, ["lime"], {ui.PRIVACY_KEY: True})
    user = at.selectbox(key="x-user").value
    fake = workspace.pseudonymizer.pseudonym(user)
    caption = next(c.value for c in at.caption if "ranks" in c.value).replace("\\", "")
    assert fake in caption and f"user {user} " not in caption
    _, text = downloads["Download per-user results (CSV)"]
    per_user = pd.read_csv(__import__("io").StringIO(text), dtype=str)
    assert fake in set(per_user["user_id"])
    assert set(per_user["user_id"]).isdisjoint(workspace.dataset.user_ids)

    at.session_state["x-view"] = "What-if"
    at.run()
    drop = next(m for m in at.multiselect if m.key.startswith("x-drop"))
    drop.set_value(drop.options[:1]).run()
    assert_clean(at)
    name, _ = downloads["Download the edited top 10 (CSV)"]
    assert name == f"what_if_{fake}.csv"

    at.session_state["x-view"] = "Attention"
    at.run()
    assert_clean(at)
    name, text = downloads["Download attention contributions (CSV)"]
    assert fake in name and user not in name.split("_")
    assert_no_raw_user(text, workspace.dataset)
    html = at.get("iframe")[0].proto.srcdoc
    assert f"user {fake}" in html and f"user {user}\"" not in html

    # Off again: the raw id is back.
    at.session_state[ui.PRIVACY_KEY] = False
    at.run()
    caption = next(c.value for c in at.caption if "ranks" in c.value).replace("\\", "")
    assert f"user {user} " in caption
