"""Sparse updates of the per-user and per-item tables in mini-batch training on the CPU
(recsys_core.training.make_optimizer / LazyTableAdam / clip_gradients): a step moves only
the rows it read, full-graph training keeps plain Adam, clipping covers sparse gradients,
and a checkpointed run resumes exactly."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_resumed_like_straight
from test_minibatch import flagship

from recsys_core.sampling import NeighborSampler
from recsys_core.training import (
    LazyTableAdam,
    clip_gradients,
    clone_config,
    make_optimizer,
    train_model,
    unique_pairs,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py


@pytest.fixture(scope="module")
def ds(explain_ds):
    return explain_ds


def fresh_module(ds, **options):
    model = flagship(ds, training_mode="minibatch", **options)
    model._bind(ds, ds.interactions)
    return model, model._fresh_module(ds)


def test_a_step_moves_only_the_rows_it_read(ds):
    model, module = fresh_module(ds)
    module.set_interactions(*unique_pairs(ds.interactions))
    module.train()
    optimizer = make_optimizer(module, model.train_config, "minibatch", torch.device("cpu"), 1)
    assert isinstance(optimizer, LazyTableAdam)
    assert module.user_id.sparse and module.item_id.sparse
    sampler = NeighborSampler(module.sampling_plan(), 3, torch.Generator().manual_seed(0))
    read = []  # the users each step's subgraph holds
    for users, items in ((torch.tensor([0, 1, 2]), torch.tensor([0])),
                         (torch.tensor([9, 10]), torch.tensor([17]))):
        before = module.user_id.weight.detach().clone()
        optimizer.zero_grad()
        batch = sampler.subgraph({"user": users, "item": items})
        read.append(set(batch["user"].n_id.tolist()))
        user_rows, item_rows = module(sampled=batch)
        (user_rows @ item_rows.T).logsumexp(1).sum().backward()
        assert module.user_id.weight.grad.is_sparse
        optimizer.step()
    after = module.user_id.weight.detach()
    # Dense Adam would move the first step's users again on momentum; lazy Adam does not.
    only_first = sorted(read[0] - read[1])
    untouched = sorted(set(range(module.num_users)) - read[0] - read[1])
    assert only_first and untouched
    assert torch.equal(after[only_first], before[only_first])
    assert torch.equal(after[untouched], before[untouched])
    assert not torch.equal(after[[9, 10]], before[[9, 10]])


def test_full_graph_several_processes_and_weight_decay_keep_plain_adam(ds):
    model, module = fresh_module(ds)
    cpu = torch.device("cpu")
    for mode, world, config in (("full", 1, model.train_config),
                                ("minibatch", 2, model.train_config),
                                ("minibatch", 1, clone_config(model.train_config,
                                                              weight_decay=1e-4))):
        assert type(make_optimizer(module, config, mode, cpu, world)) is torch.optim.Adam
    assert not module.user_id.sparse


def test_clipping_counts_sparse_gradients_like_dense_ones():
    grads = []
    for sparse in (False, True):
        torch.manual_seed(0)
        table, head = torch.nn.Embedding(10, 4, sparse=sparse), torch.nn.Linear(4, 1)
        (head(table(torch.tensor([1, 2, 2]))).sum() ** 2).backward()
        norm = clip_gradients([*table.parameters(), *head.parameters()], 0.5)
        grad = table.weight.grad.to_dense() if sparse else table.weight.grad
        grads.append((norm, grad, head.weight.grad))
    for dense, sparse in zip(*grads, strict=True):
        torch.testing.assert_close(sparse, dense)


def test_training_ends_with_dense_tables_and_resumes_exactly(ds, tmp_path):
    model, _ = fresh_module(ds)
    no_valid = ds.interactions.iloc[:0]
    config = clone_config(model.train_config, epochs=3, num_neighbors=3)

    def run(epochs, **changes):
        _, module = fresh_module(ds)
        result = train_model(module, ds, ds.interactions, no_valid,
                             clone_config(config, epochs=epochs, **changes))
        return result, module

    straight_result, straight = run(3)
    assert straight_result.training_mode == "minibatch"
    assert not straight.user_id.sparse  # scoring and explanations read whole tables
    run(2, checkpoint_dir=str(tmp_path))
    resumed_result, resumed = run(3, checkpoint_dir=str(tmp_path), resume=True)
    assert_resumed_like_straight(resumed_result, straight_result, resumed, straight)
