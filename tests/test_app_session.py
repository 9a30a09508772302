"""recsys_core.services: background jobs, run registry, workspace split, evaluation, cold start."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from recsys_core.dataset import Dataset
from recsys_core.errors import RecScopeError
from recsys_core.models import create_model
from recsys_core.services.cold_start import cold_start_reach
from recsys_core.services.evaluation import evaluate_model
from recsys_core.services.fitting import fit_model, training_target
from recsys_core.services.jobs import DONE, FAILED, STOPPED, TrainingJob
from recsys_core.services.plans import default_training_plan, model_defaults
from recsys_core.services.runs import RunRegistry, TrainedModel
from recsys_core.services.workspace import prepare_workspace, split_for_evaluation

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py


def make_dataset(
    num_users: int = 40, num_items: int = 60, seed: int = 0, prefix: str = ""
) -> Dataset:
    """Random implicit data; ids are ``{prefix}u<k>`` and ``{prefix}i<j>``."""
    rng = np.random.default_rng(seed)
    cats = ["A", "B", "C"]
    items = pd.DataFrame(
        {
            "item_id": [f"{prefix}i{j}" for j in range(num_items)],
            "title": [f"Item {j}" for j in range(num_items)],
            "description": [f"About {cats[j % 3]}." for j in range(num_items)],
            "cat": [[cats[j % 3]] for j in range(num_items)],
        }
    )
    rows = [
        (f"{prefix}u{u}", f"{prefix}i{j}", 1.0, 1.6e9 + u * 100 + j)
        for u in range(num_users)
        for j in rng.choice(num_items - 5, size=10, replace=False)
    ]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return Dataset(inter, items, ["cat"])


@pytest.fixture(scope="module")
def ws():
    return prepare_workspace(make_dataset(), source="test")


def wait(job: TrainingJob, timeout: float = 30.0) -> None:
    assert job.join(timeout), "job did not finish"


# ---------------------------------------------------------------------------------- jobs
def test_job_reports_progress_and_results():
    def target(ctx):
        for i in range(3):
            ctx.progress(
                {
                    "stage": "train",
                    "epoch": i + 1,
                    "epochs": 3,
                    "loss": 1.0 / (i + 1),
                    "fraction": (i + 1) / 3,
                }
            )
        ctx.publish("first")
        return "last"

    job = TrainingJob(target, "demo")
    assert job.status == "pending" and job.fraction == 0.0
    job.start()
    wait(job)
    assert job.status == DONE and job.error is None
    assert [e["epoch"] for e in job.history] == [1, 2, 3]
    assert job.take_results() == ["first", "last"] and job.take_results() == []
    assert job.fraction == 1.0 and "epoch 3/3" in job.describe()


def test_job_stop_is_cooperative():
    started = threading.Event()

    def target(ctx):
        started.set()
        while not ctx.should_stop():
            time.sleep(0.01)
        ctx.publish("partial")

    job = TrainingJob(target, "loop", start=True)
    assert started.wait(5)
    assert not job.finished
    job.stop()
    wait(job, 5)
    assert job.status == STOPPED and job.take_results() == ["partial"]


def test_job_failure_is_a_message_not_a_crash():
    def bad(ctx):
        raise ValueError("boom")

    def user_error(ctx):
        raise RecScopeError("Lower the learning rate.")

    job = TrainingJob(bad, "bad", start=True)
    wait(job)
    assert job.status == FAILED and "ValueError: boom" in job.error
    assert "Traceback" in job.error_details and "Traceback" not in job.error
    job = TrainingJob(user_error, "user", start=True)
    wait(job)
    assert job.error == "Lower the learning rate." and job.error_details is None


# ---------------------------------------------------------------------------------- registry
def test_run_registry():
    reg = RunRegistry()
    a = reg.add(object(), "ease", activate=False)
    assert reg.active_id == a.run_id  # the first run becomes active anyway
    b = reg.add(object(), "ease")
    assert reg.active_id == b.run_id and a.run_id != b.run_id
    assert reg.ids() == [a.run_id, b.run_id] and len(reg) == 2 and b.run_id in reg
    reg.remove(b.run_id)
    assert reg.active_id == a.run_id
    table = reg.summary()
    assert list(table["run"]) == [a.run_id] and "warm recall@20" in table and "cold recall@20" in table
    assert table["chosen_on_validation"].tolist() == [""]  # nothing chosen by this model


def test_runs_table_says_what_the_flagship_chose_on_validation():
    from types import SimpleNamespace

    from recsys_core.training import TrainResult

    chosen = {"reg_lambda": 200.0, "relative_weight": 0.1768, "valid_ndcg_graph": 0.2737,
              "valid_ndcg": 0.2892}
    reg = RunRegistry()
    reg.add(SimpleNamespace(train_result=TrainResult(selected={"item_item": chosen})), "gnn-llm")
    reg.add(SimpleNamespace(train_result=TrainResult(
        selected={"item_item": {**chosen, "relative_weight": 0.0}})), "gnn-llm")
    on, off = reg.summary()["chosen_on_validation"]
    assert on == ("item-item path: lambda=200, weight=0.177 (validation NDCG 0.2737 graph "
                  "only, 0.2892 with it)")
    assert off == "item-item path off (it did not help on validation)"


# ---------------------------------------------------------------------------------- workspace
def test_split_holds_out_cold_items_and_per_user_items():
    ds = make_dataset(num_users=60, num_items=80)
    train, test = split_for_evaluation(ds, cold_item_fraction=0.1)
    assert len(train) + len(test) == len(ds.interactions)
    assert not set(train.index) & set(test.index)
    cold = set(test["item_id"]) - set(train["item_id"])
    interacted = ds.interactions["item_id"].nunique()
    assert len(cold) == round(0.1 * interacted)
    warm_test = test[~test["item_id"].isin(cold)]
    assert warm_test["user_id"].nunique() > 0.9 * ds.num_users
    again = split_for_evaluation(ds, cold_item_fraction=0.1)
    assert again[0].index.equals(train.index)  # deterministic


def test_workspace_collect_registers_published_models(ws):
    def target(ctx):
        ctx.publish(
            TrainedModel("pop", create_model("pop").fit(ws.dataset, ws.train), activate=False)
        )
        ctx.publish(TrainedModel("ease", create_model("ease").fit(ws.dataset, ws.train)))

    job = ws.start_job(TrainingJob(target, "two"))
    with pytest.raises(RecScopeError, match="still training"):
        if not job.finished:
            ws.start_job(TrainingJob(target, "again"))
        else:
            raise RecScopeError("still training (finished too fast to check)")
    wait(job)
    runs = ws.collect()
    assert [r.model_name for r in runs] == ["pop", "ease"]
    assert ws.job is None and ws.runs.active.model_name == "ease"
    assert ws.collect() == []


def test_fit_model_and_evaluate(ws):
    job = TrainingJob(
        training_target(ws, [("mf", {"epochs": 2, "embedding_dim": 8, "device": "cpu"}, True)]),
        "mf",
    )
    ws.start_job(job)
    wait(job, 60)
    assert job.status == DONE, job.error
    (run,) = ws.collect()
    assert run.model_name == "mf" and run.params["epochs"] == 2
    assert [h["epoch"] for h in run.history] == [1, 2]
    metrics = run.cache["metrics"]
    assert {"summary", "at_k", "per_user", "cold_items", "long_tail"} <= set(metrics)
    assert set(metrics["at_k"]["k"]) == {1, 5, 10, 20, 50}
    assert metrics["cold_items"]["n_items"] > 0
    assert 0.0 <= metrics["summary"]["recall"] <= 1.0
    assert len(metrics["per_user"]) == ws.test["user_id"].nunique()


def test_fit_model_stop_keeps_partial_model(ws):
    stop = threading.Event()

    class Ctx:
        def progress(self, event):
            if event.get("epoch"):
                stop.set()

        def should_stop(self):
            return stop.is_set()

        def check_stop(self):
            pass

    # Several steps per epoch: a stop lands inside an epoch, after its first step.
    trained = fit_model(
        ws,
        "mf",
        {"epochs": 50, "embedding_dim": 8, "device": "cpu", "batch_size": 64},
        Ctx(),
        evaluate=False,
    )
    assert trained.status == STOPPED
    assert len(trained.history) <= 2
    assert trained.model.recommend(users=[ws.dataset.user_ids[0]], k=3).shape[0] == 3


class QuietContext:
    """A job context that records progress and never stops."""

    def __init__(self):
        self.events = []

    def progress(self, event):
        self.events.append(event)

    def should_stop(self):
        return False

    def check_stop(self):
        pass


def test_default_ease_chooses_lambda_on_validation_and_the_run_records_it(ws):
    from recsys_core.tuning import DEFAULT_GRIDS

    ctx = QuietContext()
    trained = fit_model(ws, "ease", {}, ctx, evaluate=False)
    chosen = trained.tuning["chosen"]["reg_lambda"]
    assert chosen in DEFAULT_GRIDS["ease"]["reg_lambda"]
    assert trained.model.reg_lambda == chosen and trained.params == {"reg_lambda": chosen}
    assert len(trained.tuning["points"]) == len(DEFAULT_GRIDS["ease"]["reg_lambda"])
    assert any(e.get("stage") == "tune" for e in ctx.events)
    reg = RunRegistry()
    run = reg.add_trained(trained)
    assert run.tuning == trained.tuning
    row = reg.validation_choices().iloc[0]
    assert row["chosen on validation"] == f"reg_lambda {chosen:g}"
    assert row["how"].startswith("grid of 7 on the validation split (10% of each user's")
    best = max(p["ndcg"] for p in trained.tuning["points"])
    assert row["valid ndcg@20"] == pytest.approx(best)
    assert reg.summary()["chosen_on_validation"].iloc[0].startswith(f"reg_lambda {chosen:g} (")


def test_ease_given_settings_or_large_data_is_not_tuned(ws, monkeypatch):
    import recsys_core.tuning as tuning

    given = fit_model(ws, "ease", {"reg_lambda": 50.0}, QuietContext(), evaluate=False)
    assert given.tuning is None and given.model.reg_lambda == 50.0
    monkeypatch.setattr(tuning, "APP_TUNING_MAX_ITEMS", 5)
    large = fit_model(ws, "ease", {}, QuietContext(), evaluate=False)
    assert large.tuning is None and large.model.reg_lambda == 500.0
    forced = fit_model(ws, "ease", {}, QuietContext(), evaluate=False, tune=True)
    assert forced.tuning is not None


def test_validation_choices_table_covers_every_kind_of_run():
    from types import SimpleNamespace

    from recsys_core.training import TrainResult

    reg = RunRegistry()
    reg.add(object(), "pop")
    reg.add(SimpleNamespace(train_result=TrainResult(best_epoch=12, best_valid_ndcg=0.25)), "mf")
    reg.add(SimpleNamespace(validation={"popularity_weight": 1.0, "held_out_items": 150,
                                        "recall_by_weight": {"1.0": 0.31}}, valid_k=20),
            "text-pop")
    table = reg.validation_choices()
    assert list(table.columns) == ["run", "model", "chosen on validation", "how",
                                   "valid ndcg@20"]
    assert table["chosen on validation"].tolist() == [
        "constructor settings (nothing chosen on validation)", "12 epochs (early stopping)",
        "popularity weight 1"]
    assert table["valid ndcg@20"].tolist()[1] == 0.25
    assert "150 items held out" in table["how"].iloc[2]


def test_default_plan_and_defaults():
    plan, weights = default_training_plan()
    names = [p[0] for p in plan]
    assert names[-1] == "gnn-llm" and plan[-1][2] is True
    assert names.index("ease") < names.index("gnn-llm") and len(weights) == len(plan)
    assert model_defaults("ease")["reg_lambda"] == 500.0


def test_evaluate_and_cold_start_reach(ws):
    model = create_model("ease").fit(ws.dataset, ws.train)
    metrics = evaluate_model(model, ws, ks=(5, 10))
    assert set(metrics["at_k"]["k"]) == {5, 10}
    rng = np.random.default_rng(0)
    ws.item_text = rng.normal(size=(ws.dataset.num_items, 8)).astype(np.float32)
    users, neighbours = cold_start_reach(model, ws, ws.item_text[3], k_items=5, top_users=7)
    assert len(users) == 7
    assert list(users.columns) == ["user_id", "score", "interactions", "method"]
    assert set(users["method"]) == {"text bridge"}  # EASE cannot score unseen items itself
    assert users["score"].is_monotonic_decreasing
    assert neighbours["item_id"].iloc[0] == "i3"  # its own text is the nearest
    # The flagship scores the new item itself: the same text as catalogue item 3 plus its
    # attributes reaches users as item 3 would if it had no interactions.
    flagship = create_model("gnn-llm", embedding_dim=8, epochs=1, device="cpu",
                            show_progress=False, item_text_embeddings=ws.item_text)
    flagship.fit(ws.dataset, ws.train)
    users, _ = cold_start_reach(flagship, ws, ws.item_text[3], top_users=ws.dataset.num_users)
    assert set(users["method"]) == {"model"} and users["score"].is_monotonic_decreasing
    direct = flagship.score_new_items(ws.item_text[3:4])[:, 0]
    full = flagship.score(np.arange(ws.dataset.num_users), None)
    z = (direct - full.mean(1)) / (full.std(1) + 1e-9)
    order = ws.dataset.user_idx(users["user_id"])
    np.testing.assert_allclose(users["score"].to_numpy(), z[order], rtol=1e-5, atol=1e-6)
    ws.item_text = None
    with pytest.raises(RecScopeError):
        cold_start_reach(model, ws, np.ones(8))


# ---------------------------------------------------------------------------------- sessions
def test_two_sessions_train_at_once_without_sharing_state():
    """Two browser sessions' workspaces (distinct ids), each with a job running at the same
    time: neither sees the other's data, runs, progress or caches, and stopping one job
    leaves the other alone."""
    ws_a = prepare_workspace(make_dataset(30, 40, seed=1, prefix="A_only_"), source="upload A")
    ws_b = prepare_workspace(make_dataset(30, 40, seed=2, prefix="B_only_"), source="demo B")
    both_running = threading.Barrier(2, timeout=30)
    mf = training_target(ws_a, [("mf", {"epochs": 3, "embedding_dim": 8, "device": "cpu"}, True)])

    def target_a(ctx):
        both_running.wait()
        return mf(ctx)

    def target_b(ctx):  # publishes a model, then keeps "training" until stopped
        both_running.wait()
        ctx.publish(TrainedModel("pop", create_model("pop").fit(ws_b.dataset, ws_b.train)))
        while not ctx.should_stop():
            ctx.progress({"model": "pop", "stage": "train", "fraction": 0.5})
            time.sleep(0.01)

    job_a = ws_a.start_job(TrainingJob(target_a, "A: mf"))
    job_b = ws_b.start_job(TrainingJob(target_b, "B: pop"))
    assert job_a.job_id != job_b.job_id
    wait(job_a, 60)
    assert job_a.status == DONE, job_a.error
    assert not job_b.finished and not job_b.stop_requested  # A's end did not stop B
    ws_b.collect()  # B's page reruns meanwhile: it picks up only its own model
    assert ws_b.runs.ids() == ["pop #1"] and ws_b.training
    job_b.stop()
    wait(job_b, 10)
    assert job_b.status == STOPPED and not job_a.stop_requested and job_a.status == DONE

    (run_a,) = ws_a.collect()
    ws_b.collect()
    assert ws_a.runs.ids() == ["mf #1"] and ws_b.runs.ids() == ["pop #1"]
    assert ws_a.runs is not ws_b.runs and ws_a.finished_jobs == [job_a]
    assert ws_b.finished_jobs == [job_b] and ws_a.job is None and ws_b.job is None
    assert {e.get("model") for e in job_a.history} == {"mf"}
    assert {e.get("model") for e in job_b.history} == {"pop"}
    # Each model knows only its own session's data.
    for ws, own, other in ((ws_a, "A_only_", "B_only_"), (ws_b, "B_only_", "A_only_")):
        model = ws.runs.active.model
        user = ws.dataset.user_ids[0]
        recs = model.recommend(users=[user], k=5)
        assert len(recs) == 5
        assert all(str(i).startswith(own) for i in recs["item_id"])
        assert all(str(u).startswith(own) for u in ws.dataset.user_ids)
        assert not any(str(i).startswith(other) for i in ws.dataset.item_ids)
    assert set(run_a.cache["metrics"]["per_user"]["user_id"]) <= set(ws_a.dataset.user_ids)
    # Per-session caches are separate objects.
    ws_a.cache["titles"] = "A"
    assert "titles" not in ws_b.cache and ws_a.graph() is not ws_b.graph()
