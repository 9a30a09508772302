"""GNNExplainer view of one (user, item) score of the flagship, through ``torch_geometric.explain``.

PyG's :class:`~torch_geometric.explain.Explainer` with the
:class:`~torch_geometric.explain.algorithm.GNNExplainer` algorithm learns one soft mask per
edge (heterogeneous: one mask tensor per relation) that keeps the model's output while being
sparse. The masked edges are the pair's *evidence* edges: the user's interactions (both
directions), the user's user-user edges, and the edges into the item from its attribute values
and its raters. Each mask value multiplies that edge's message in every layer (PyG's explain
masks on message-passing layers), and the score is recomputed exactly for the masked graph by the
incremental engine (:class:`~recsys_core.explain.engine.FlagshipEngine`), so an epoch costs a
fraction of a full forward pass. A node's importance is the largest mask of its edges with the
pair. The explained output is the logit "this item scores above the user's average item"
(the score standardised over all items) under GNNExplainer's binary-classification objective,
which keeps the edges that support that prediction and lets the others fade; weights are the
importances in [0, 1], negated when the item scores below the user's average.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn
from torch_geometric.explain import Explainer, GNNExplainer
from torch_geometric.nn import MessagePassing

from ..dataset import Dataset
from ..rng import draws_from, private_draws, torch_generator
from .attention import require_attention_flagship
from .engine import EdgeType, FlagshipEngine
from .evidence import Explanation, contribution_frame, node_evidence

DEFAULT_EPOCHS = 50  # GNNExplainer's optimisation steps unless told otherwise


class _MaskHolder(MessagePassing):
    """Receives one relation's edge mask from PyG's explainer (never propagates itself)."""

    def forward(self, *args, **kwargs):  # pragma: no cover - never called
        raise RuntimeError("mask holder is not a layer")


class GeneratorGNNExplainer(GNNExplainer):
    """PyG's :class:`~torch_geometric.explain.algorithm.GNNExplainer` whose masks start from
    its own generator (PyG draws them from torch's global one, which other sessions share).

    Args:
        generator (torch.Generator): Source of the initial masks.
        **kwargs: :class:`~torch_geometric.explain.algorithm.GNNExplainer`'s arguments.
    """

    def __init__(self, generator: torch.Generator, **kwargs) -> None:
        super().__init__(**kwargs)
        self.generator = generator

    def _initialize_masks(self, x, edge_index) -> None:
        with draws_from(self.generator):  # PyG's own initialisation, drawing from ours
            super()._initialize_masks(x, edge_index)


class PairScoreModel(nn.Module):
    """``model(x_dict, edge_index_dict) -> score`` of one (user, item) pair, for PyG's explainer.

    ``edge_index_dict`` holds the candidate edges (global node indices); the explainer's mask
    for relation ``r`` lands on ``holders[r]`` and scales those edges' messages. ``x_dict``
    is only used by PyG for mask sizing: node features are the model's own.

    Args:
        engine (FlagshipEngine): The flagship's engine.
        user (int): User index.
        item (int): Item index.
        positions (dict): Relation -> positions (in ``engine.edges``) of the candidate edges.
    """

    def __init__(self, engine: FlagshipEngine, user: int, item: int,
                 positions: dict[EdgeType, Tensor], center: float = 0.0,
                 scale: float = 1.0) -> None:
        super().__init__()
        self.engine, self.user, self.item = engine, user, item
        self.center, self.scale = float(center), float(scale)
        self.positions = positions
        self.holders = nn.ModuleDict({"__".join(et): _MaskHolder() for et in positions})
        # A plain list keeps the layers out of ``modules()``: PyG must not mask them itself.
        with private_draws():  # the twins' initial weights are replaced by the model's
            self._convs = [engine.explainable_convs()]

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]) -> Tensor:
        weights = {}
        for et, pos in self.positions.items():
            holder = self.holders["__".join(et)]
            mask = holder._edge_mask if holder.explain else None
            if mask is None:
                continue
            weights[et] = (pos, mask.sigmoid() if holder._apply_sigmoid else mask)
        score = self.engine.weighted_scores(self.user, self.item, weights, self._convs[0])
        return (score - self.center) / self.scale


def candidate_edges(engine: FlagshipEngine, user: int, item: int) -> dict[EdgeType, Tensor]:
    """Positions (per relation) of the pair's evidence edges: every edge with the user at
    either end, and every edge into the item. (The item's outgoing edges only reach the
    score through its raters' states, whose recomputation would cost a full pass per step.)"""
    out: dict[EdgeType, Tensor] = {}
    for et in engine.edges:
        parts = []
        for side, node_type, node in ((0, "user", user), (2, "user", user), (2, "item", item)):
            if et[side] == node_type:
                index = engine.by_src[et] if side == 0 else engine.by_dst[et]
                parts.append(index.positions(torch.tensor([node])))
        if parts:
            pos = torch.unique(torch.cat(parts))
            if pos.numel():
                out[et] = pos
    return out


def gnn_explainer_explanation(
    model,
    dataset: Dataset,
    user_id: str,
    item_id: str,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = 0.01,
    edge_size: float = 0.005,
    seed: int = 0,
) -> Explanation:
    """GNNExplainer edge-mask importances of the pair's evidence, mapped to history items,
    attribute values and neighbours.

    Args:
        model (GNNLLMRecommender): A fitted flagship model.
        dataset (Dataset): Its dataset.
        user_id (str): Raw user id.
        item_id (str): Raw item id.
        epochs (int): GNNExplainer optimisation steps (each a forward and backward pass
            through the pair's recomputed states). (default: :obj:`50`)
        lr (float): Its learning rate; larger rates saturate every mask at 1 and lose the
            ranking. (default: :obj:`0.01`)
        edge_size (float): GNNExplainer's sparsity coefficient. (default: :obj:`0.005`)
        seed (int): Seed of the mask initialisation. (default: :obj:`0`)

    Returns:
        Explanation: ``contributions`` with ``weight`` = importance in [0, 1];
        ``details["edge_masks"]`` per relation ``(edge_index [2, k], mask [k])``,
        ``details["masked_score"]`` the score with the learned soft masks applied.
    """
    engine = require_attention_flagship(model, "gnnexplainer")
    start = time.perf_counter()
    user = int(dataset.user_idx(str(user_id))[0])
    item = int(dataset.item_idx(str(item_id))[0])
    positions = candidate_edges(engine, user, item)
    all_scores = torch.from_numpy(engine.scores(user))
    score = float(all_scores[item])
    # Explained output: the logit "this item scores above the user's average item" (the
    # score standardised over all items), with GNNExplainer's binary objective, which keeps
    # the edges that support the prediction and drops those that oppose it.
    center, spread = float(all_scores.mean()), max(float(all_scores.std()), 1e-6)
    wrapper = PairScoreModel(engine, user, item, positions, center, spread).eval()
    edge_index = {et: engine.edges[et][:, pos] for et, pos in positions.items()}
    x_dict = {nt: x for nt, x in engine.x0.items()}
    explainer = Explainer(
        model=wrapper,
        algorithm=GeneratorGNNExplainer(torch_generator(seed), epochs=epochs, lr=lr,
                                        edge_size=edge_size),
        explanation_type="model", edge_mask_type="object", node_mask_type=None,
        model_config={"mode": "binary_classification", "task_level": "graph",
                      "return_type": "raw"})
    result = explainer(x_dict, edge_index)
    masks = {et: result[et].edge_mask.detach() for et in positions
             if "edge_mask" in result[et]}

    with torch.no_grad():
        soft = {et: (positions[et], masks[et]) for et in masks}
        masked = float(engine.weighted_scores(user, item, soft, wrapper._convs[0]).sum())
    # Importances support the prediction: above the user's average (+) or below it (-).
    sign = 1.0 if score >= center else -1.0

    history = frozenset(engine.history(user).tolist())
    attribute_nodes = engine.attribute_nodes
    best: dict[tuple[str, int], float] = {}
    for et, mask in masks.items():
        ei = edge_index[et]
        for (src, dst), value in zip(ei.T.tolist(), mask.tolist(), strict=True):
            # The evidence node is the end that is neither the user nor the item.
            for node_type, node in ((et[0], src), (et[2], dst)):
                if (node_type, node) in (("user", user), ("item", item)):
                    continue
                key = (node_type, int(node))
                best[key] = max(best.get(key, 0.0), float(value))
    rows = []
    for (node_type, node), value in best.items():
        kind, raw, label = node_evidence(dataset, attribute_nodes, node_type, node, history)
        rows.append({"kind": kind, "id": raw, "label": label, "weight": sign * value,
                     "node_type": node_type, "index": node})
    return Explanation(
        method="gnnexplainer", user_id=str(user_id), item_id=str(item_id), score=score,
        base_value=None, contributions=contribution_frame(rows),
        details={"edge_masks": {et: (edge_index[et], masks[et]) for et in masks},
                 "masked_score": masked, "seconds": time.perf_counter() - start,
                 "epochs": epochs})


__all__ = ["DEFAULT_EPOCHS", "GeneratorGNNExplainer", "PairScoreModel", "candidate_edges",
           "gnn_explainer_explanation"]
