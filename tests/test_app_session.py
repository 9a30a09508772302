"""recsys_core.session: background jobs, run registry, workspace split, evaluation, cold start."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from recsys_core.dataset import Dataset
from recsys_core.errors import RecScopeError
from recsys_core.models import create_model
from recsys_core.session import (
    DONE,
    FAILED,
    STOPPED,
    RunRegistry,
    TrainedModel,
    TrainingJob,
    cold_start_reach,
    default_training_plan,
    evaluate_model,
    fit_model,
    model_defaults,
    prepare_workspace,
    split_for_evaluation,
    training_target,
)


def make_dataset(num_users: int = 40, num_items: int = 60, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    cats = ["A", "B", "C"]
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(num_items)],
            "title": [f"Item {j}" for j in range(num_items)],
            "description": [f"About {cats[j % 3]}." for j in range(num_items)],
            "cat": [[cats[j % 3]] for j in range(num_items)],
        }
    )
    rows = [
        (f"u{u}", f"i{j}", 1.0, 1.6e9 + u * 100 + j)
        for u in range(num_users)
        for j in rng.choice(num_items - 5, size=10, replace=False)
    ]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return Dataset(inter, items, ["cat"])


@pytest.fixture(scope="module", autouse=True)
def single_thread_torch():
    """Tiny tensors: one intra-op thread is faster and immune to a busy machine's contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    assert list(table["run"]) == [a.run_id] and "recall@20" in table


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
    assert len(users) == 7 and list(users.columns) == ["user_id", "score", "interactions"]
    assert users["score"].is_monotonic_decreasing
    assert neighbours["item_id"].iloc[0] == "i3"  # its own text is the nearest
    ws.item_text = None
    with pytest.raises(RecScopeError):
        cold_start_reach(model, ws, np.ones(8))
