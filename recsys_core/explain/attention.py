r"""Attention-based explanation of one (user, item) score of the flagship.

The flagship's score is :math:`s = \langle \mathbf{z}_u, \mathbf{z}_i \rangle` with
:math:`\mathbf{z}_u` and :math:`\mathbf{z}_i` means of the user's and the item's
``L + 1`` layer states (the module's readout, layer 0 being the inputs). Every layer state is
a sum over relations of graph-attention outputs,
:math:`\mathbf{h}_t = \sum_{r}\big(\sum_{e = (s \to t)} \mathbf{m}_e + \mathbf{b}_r\big)`,
with one message per incoming edge, :math:`\mathbf{m}_e = \Vert_h\, \alpha^h_e\,
\mathbf{W}^h_r \mathbf{x}_s` (attention weight times value). So the score splits exactly
into one term per message into the user (:math:`\langle \mathbf{m}_e, \mathbf{z}_i\rangle`
over the number of layer states) and per message into the item (likewise with
:math:`\mathbf{z}_u`), plus the nodes' own input features (the item's text and id
embedding, the shared user token) and the biases:
the attention-times-value decomposition of Kobayashi et al. (EMNLP 2020), applied to both
ends of the dot product (each side weighted 1/2). A source's contribution is the sum of its
messages' terms over layers and relations: "how much what it sends moves the score". The
terms add up to the score exactly: ``base_value`` (biases and id embedding) + sum of the
weights = ``score``.

When the flagship's item-item path is on (:mod:`recsys_core.models.item_item`), its term
:math:`\alpha \sum_j B_{ji}` adds one exact contribution per history item :math:`j`
(``details["item_item"]``), counted in that item's weight.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..dataset import Dataset
from ..errors import RecScopeError
from ..rng import private_draws
from .engine import FlagshipEngine, GraphEdit, flagship_engine, is_flagship
from .evidence import TEXT, Explanation, contribution_frame, node_evidence

#: Columns of the item-item path's terms (one row per history item).
ITEM_ITEM_COLUMNS = ["source_type", "source_index", "source_id", "contribution"]
EDGE_COLUMNS = ["layer", "relation", "source_type", "source_index", "source_id",
                "target_type", "target_index", "target_id", "head", "alpha", "contribution"]


class ExplainUnsupportedError(RecScopeError):
    """The explanation method does not apply to this model."""


def require_attention_flagship(model, method: str) -> FlagshipEngine:
    """The flagship's engine, or a clear error for baselines / non-attention convolutions."""
    if not is_flagship(model):
        raise ExplainUnsupportedError(
            f"The '{method}' explanation needs the graph-attention flagship ('gnn-llm'); this "
            f"run holds a '{getattr(model, 'name', type(model).__name__)}' model. Use "
            f"'--method shap' (history items) or the 'score' command for this model.")
    if method == "attention" and getattr(model, "conv", "gat") not in ("gat", "gatv2"):
        raise ExplainUnsupportedError(
            f"The 'attention' explanation needs attention layers; this flagship was trained "
            f"with conv='{model.conv}'. Use '--method shap' or '--method gnnexplainer'.")
    return flagship_engine(model)


@torch.no_grad()
def attention_explanation(model, dataset: Dataset, user_id: str, item_id: str) -> Explanation:
    """Explain ``score(user, item)`` by the attention-weighted messages into both ends.

    Args:
        model (GNNLLMRecommender): A fitted flagship with ``conv="gat"`` or ``"gatv2"``.
        dataset (Dataset): Its dataset.
        user_id (str): Raw user id.
        item_id (str): Raw item id.

    Returns:
        Explanation: ``contributions`` per source node (history items, neighbouring users
        and items, the item's attribute values, its text) with an extra ``attention`` column
        (mean attention weight of the node's edges into the pair); ``base_value`` is the
        part no source accounts for; ``details["edges"]`` holds the raw per-edge weights
        (:data:`EDGE_COLUMNS`: one row per edge into the user or the item, layer and head;
        ``layer`` counts from 0 like :meth:`GNNLLMRecommender.attention`), and
        ``details["item_item"]`` the item-item path's term per history item
        (:data:`ITEM_ITEM_COLUMNS`; empty when the path is off), and
        ``details["residual"]`` the (float rounding) gap ``score - base - sum(weights)``.
    """
    engine = require_attention_flagship(model, "attention")
    user = int(dataset.user_idx(str(user_id))[0])
    item = int(dataset.item_idx(str(item_id))[0])
    parts = decompose(engine, user, item)
    history = frozenset(engine.history(user).tolist())
    attribute_nodes = engine.attribute_nodes

    edges = parts["edges"]
    terms = pd.concat([edges.loc[edges["head"] == 0, ITEM_ITEM_COLUMNS], parts["item_item"]],
                      ignore_index=True) if len(parts["item_item"]) else edges[edges["head"] == 0]
    by_node = (terms
               .groupby(["source_type", "source_index"], sort=False)
               .agg(weight=("contribution", "sum")).reset_index())
    attention = edges.groupby(["source_type", "source_index"], sort=False)["alpha"].mean()
    attention = attention.reindex(by_node.set_index(["source_type", "source_index"]).index)
    rows = []
    for r in by_node.itertuples(index=False):
        if r.source_type == "user" and int(r.source_index) == user:
            continue  # the user's own messages into the item: not evidence about the user
        kind, node_id, label = node_evidence(dataset, attribute_nodes, r.source_type,
                                             r.source_index, history)
        rows.append({"kind": kind, "id": node_id, "label": label, "weight": float(r.weight),
                     "node_type": r.source_type, "index": int(r.source_index),
                     "attention": float(attention.loc[(r.source_type, r.source_index)])})
    base = parts["base"] + parts["self_user"]
    title = str(dataset.items["title"].iat[item])
    rows.append({"kind": TEXT, "id": "item_text", "label": f'text of "{title}"',
                 "weight": parts["text"], "node_type": "item", "index": -1,
                 "attention": np.nan})
    frame = contribution_frame(rows, extra_columns=("attention",))
    residual = parts["score"] - base - float(frame["weight"].sum())
    return Explanation(
        method="attention", user_id=str(user_id), item_id=str(item_id),
        score=parts["score"], base_value=base, contributions=frame,
        details={"edges": edges, "item_item": parts["item_item"], "residual": residual,
                 "item_self": parts["item_self"], "user_own_messages": parts["self_user"]})


@torch.no_grad()
def decompose(engine: FlagshipEngine, user: int, item: int) -> dict:
    """Exact split of ``score(user, item)`` into per-edge message terms (see module doc).

    Returns:
        dict with ``score``, ``edges`` (per-edge frame, :data:`EDGE_COLUMNS`), ``base``
        (biases and the item's id embedding), ``text`` (the item's text features),
        ``self_user`` (messages the user itself sends into the item) and ``item_self``.
    """
    pool_user, pool_item = engine.user_pool[user], engine.item_pool[item]
    score = float(engine.user_emb[user] @ engine.item_emb[item])
    with private_draws():  # the twins' initial weights are replaced by the model's
        convs = engine.explainable_convs()
    dataset = engine.dataset
    frames = []
    base = 0.0
    self_user = 0.0
    # The readout is the mean of the L + 1 layer-end states (layer 0: the inputs).
    share = 0.5 / len(engine.layer_end)
    sides = {"user": (user, pool_item), "item": (item, pool_user)}
    base += float(share * (engine.x0["user"][user] @ pool_item))  # the shared user token
    for position, stage in _layer_end_stages(engine):
        if stage.dst not in sides:
            continue
        index, other = sides[stage.dst]
        target = torch.tensor([index])
        x_dst = engine.state(engine.snapshots, {}, stage.target, stage.dst, target)
        incoming = {et: engine.incoming(et, target) for et in stage.relations}
        sources, local = {}, {}
        for nt in dict.fromkeys(et[0] for et in stage.relations):
            src = torch.unique(torch.cat([ei[0] for et, ei in incoming.items() if et[0] == nt]))
            sources[nt] = engine.state(engine.snapshots, {}, position - 1, nt, src)
            for et, ei in incoming.items():
                if et[0] == nt:
                    local[et] = torch.stack([torch.searchsorted(src, ei[0]),
                                             torch.zeros(ei.size(1), dtype=torch.long)])
        layer_convs = convs[stage.layer - 1]
        captured: dict = {}
        handles = [layer_convs["__".join(et)].register_message_forward_hook(
            lambda module, inputs, output, et=et, store=captured: store.__setitem__(et, output))
            for et in stage.relations]
        try:  # the stage's own output: without the state an accumulating stage adds to
            out, alphas = engine.module.run_stage(stage._replace(accumulate=False), sources,
                                                  x_dst, local, convs=layer_convs,
                                                  return_attention=True)
        finally:
            for handle in handles:
                handle.remove()
        rest = out[0]  # the biases: the output less every message
        for et in stage.relations:
            ei, alpha = incoming[et], alphas[et][1]
            messages = (captured[et].reshape(ei.size(1), out.size(1)) if et in captured
                        else out.new_zeros(0, out.size(1)))
            terms = share * (messages @ other)
            rest = rest - messages.sum(0)
            if stage.dst == "item" and et[0] == "user":
                self_user += float(terms[ei[0] == user].sum())
            heads = alpha.size(1)
            frames.append(pd.DataFrame({
                "layer": stage.layer - 1, "relation": "__".join(et),
                "source_type": et[0], "source_index": np.repeat(ei[0].numpy(), heads),
                "source_id": np.repeat(_raw_ids(dataset, engine, et[0], ei[0].numpy()), heads),
                "target_type": stage.dst, "target_index": index,
                "target_id": _raw_ids(dataset, engine, stage.dst, np.array([index]))[0],
                "head": np.tile(np.arange(heads), ei.size(1)),
                "alpha": alpha.reshape(-1).float().numpy(),
                "contribution": np.repeat(terms.numpy(), heads)}))
        base += float(share * (rest @ other))
    x_item = engine.x0["item"][item]
    no_text = {item: torch.zeros_like(engine.module.item_text[item])}
    without = engine.input_features(GraphEdit(item_text=no_text))["item"][item]
    text = float(share * ((x_item - without) @ pool_user))
    item_self = float(share * (without @ pool_user))
    # Graph-independent extra columns (an item bias from text and id), split the same way.
    user_extra = engine.user_extra[user]
    extra = float(user_extra @ engine.item_extra[item])
    extra_without_text = float(user_extra @ engine.item_extras(no_text)[item])
    text += extra - extra_without_text
    item_self += extra_without_text
    base += item_self
    item_item = pd.DataFrame(columns=ITEM_ITEM_COLUMNS)
    if engine.item_item is not None:  # the item-item path: one exact term per history edge
        history = torch.from_numpy(engine.history(user))
        terms = engine.item_item.pair_weights(history, torch.tensor([item]))[:, 0]
        score += float(terms.sum())
        item_item = pd.DataFrame({
            "source_type": "item", "source_index": history.numpy(),
            "source_id": _raw_ids(dataset, engine, "item", history.numpy()),
            "contribution": terms.numpy()})
    edges = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=EDGE_COLUMNS))[EDGE_COLUMNS]
    return {"score": score, "edges": edges, "base": base, "text": text, "self_user": self_user,
            "item_self": item_self, "item_item": item_item}


def _layer_end_stages(engine: FlagshipEngine):
    """``(position, stage)`` of the stages whose outputs make up a layer's final state of
    their node type (those after the layer's last replacing stage of that type)."""
    chosen = []
    for layer in range(1, engine.num_layers + 1):
        positions = range(engine.layer_end[layer - 1] + 1, engine.layer_end[layer] + 1)
        last: dict[str, list[int]] = {}
        for position in positions:
            stage = engine.stages[position - 1]
            if stage.accumulate and stage.dst in last:
                last[stage.dst].append(position)
            else:
                last[stage.dst] = [position]
        chosen.extend(p for group in last.values() for p in group)
    return [(p, engine.stages[p - 1]) for p in sorted(chosen)]


def _raw_ids(dataset: Dataset, engine: FlagshipEngine, node_type: str,
             index: np.ndarray) -> np.ndarray:
    if node_type == "user":
        return dataset.user_ids[index].astype(str)
    if node_type == "item":
        return dataset.item_ids[index].astype(str)
    values = engine.attribute_nodes.get(node_type, (node_type, []))[1]
    return np.asarray([values[i] if i < len(values) else str(i) for i in index], dtype=object)
