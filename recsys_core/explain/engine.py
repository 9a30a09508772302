"""Fast, exact re-scoring of the flagship on edited graphs (no retraining).

Explanations evaluate the flagship :class:`~recsys_core.models.gnn_llm.GNNLLMRecommender` on
hundreds of slightly edited graphs (a few of the user's interactions removed, an attribute
edge of the item removed, the item's text re-encoded). A full forward pass over the whole
graph costs 0.2-0.5 s on a 2-core CPU for MovieLens-sized data, too slow for that. The
network runs as a fixed sequence of *stages* (per layer: one node type updated from some of
its incoming relations); a node's state after a stage only changes when one of its incoming
edges of that stage changes or one of the states it reads changed; and a (user, item) score
only needs the states its final embeddings depend on. :class:`FlagshipEngine` keeps every
node's clean state after every stage from one full pass and, for an edit, recomputes only the
states that are both *changed* and *needed*, with the model's own convolutions over those
nodes' complete (edited) incoming edge sets. Many edits are evaluated together, sharing the
convolution calls. The stages are the model's own: the engine runs the module's
:meth:`~recsys_core.models.gnn_llm.GNNLLMModule.stage_program` through its
:meth:`~recsys_core.models.gnn_llm.GNNLLMModule.run_stage`, so it follows any change of the
propagation. The result is exact, not an approximation: the engine checks at construction that
its snapshots reproduce the model's embeddings and otherwise falls back to full forward passes
of the model.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.nn import GATConv, MessagePassing

from ..graph import FOLLOWED_BY, FOLLOWS, RATED_BY, RATES, build_hetero_graph
from ..models.stages import EdgeType, Stage

__all__ = ["FlagshipEngine", "GraphEdit", "Stage", "flagship_engine", "is_flagship"]

#: Convolutions whose output at a node depends only on that node's incoming edges and the
#: sources' states (GCN also uses source degrees, so edits reach further: full passes then).
_LOCAL_CONVS = ("gat", "sage", "gin")


@dataclass
class GraphEdit:
    """Changes to the model's scoring graph, relative to its training graph.

    Args:
        removed (dict): Edge type -> positions (into the engine's edge arrays) of edges to
            drop. (default: none)
        added (dict): Edge type -> ``[2, k]`` edges to add. (default: none)
        item_text (dict): Item index -> replacement text embedding ``[t]``. (default: none)
    """

    removed: dict[EdgeType, Tensor] = field(default_factory=dict)
    added: dict[EdgeType, Tensor] = field(default_factory=dict)
    item_text: dict[int, Tensor] = field(default_factory=dict)

    def merge(self, other: GraphEdit) -> GraphEdit:
        """Both edits at once."""
        removed = dict(self.removed)
        for et, pos in other.removed.items():
            removed[et] = torch.unique(torch.cat([removed[et], pos])) if et in removed else pos
        added = dict(self.added)
        for et, ei in other.added.items():
            added[et] = torch.cat([added[et], ei], dim=1) if et in added else ei
        return GraphEdit(removed, added, {**self.item_text, **other.item_text})

    @property
    def is_empty(self) -> bool:
        return (not any(v.numel() for v in self.removed.values())
                and not any(v.numel() for v in self.added.values()) and not self.item_text)


class _CSR:
    """Positions of a relation's edges grouped by one endpoint (source or target)."""

    def __init__(self, index: Tensor, num_nodes: int) -> None:
        self.perm = torch.argsort(index, stable=True)
        counts = torch.bincount(index, minlength=num_nodes)
        self.ptr = torch.zeros(num_nodes + 1, dtype=torch.long)
        self.ptr[1:] = torch.cumsum(counts, 0)

    def positions(self, nodes: Tensor) -> Tensor:
        """Edge positions whose endpoint is in ``nodes`` (a 1-D index tensor)."""
        if nodes.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        start = self.ptr[nodes]
        count = self.ptr[nodes + 1] - start
        total = int(count.sum())
        if total == 0:
            return torch.zeros(0, dtype=torch.long)
        offsets = torch.repeat_interleave(start - (torch.cumsum(count, 0) - count), count)
        return self.perm[offsets + torch.arange(total)]


_ALL = None  # "every node" in need sets


class FlagshipEngine:
    r"""Exact incremental re-scoring of a fitted ``GNNLLMRecommender`` on edited graphs.

    The engine works on a private copy of the model's network (the shared model is never
    modified, so it is safe to use from several threads) and runs the module's own program:
    the :class:`~recsys_core.models.stages.Stage` steps of ``module.stage_program``, each
    computed by ``module.run_stage`` (full passes and incremental patches alike), final
    embeddings by ``module.readout`` over the layer-end snapshots, plus the module's
    graph-independent extra columns (an item bias). Construction runs one full pass and checks
    it against the model's cached embeddings; when they disagree (:attr:`exact_incremental` is
    ``False``, e.g. for convolutions whose output at a node depends on more than its incoming
    edges) every query falls back to the module's own full forward pass.

    Item text replacements (which reach far through the graph) give *base* snapshots, cached
    per text variant; edge edits are applied incrementally on top of that base.

    Args:
        model (GNNLLMRecommender): A fitted flagship model.
        max_cached_variants (int): Text variants whose base snapshots are kept.
            (default: :obj:`64`)
    """

    def __init__(self, model, max_cached_variants: int = 64) -> None:
        if getattr(model, "module", None) is None or getattr(model, "dataset", None) is None:
            raise RuntimeError("The model is not fitted.")
        self.model = model
        self.module_source = model.module
        self.dataset = model.dataset
        # The flagship's item-item term (None when off): additive over the user's ``rates``
        # edges, so edits and soft masks apply to it exactly.
        self.item_item = getattr(model, "item_item_path", None)
        self.module = copy.deepcopy(model.module).to("cpu").eval()
        self.module.requires_grad_(False)
        self.num_layers = int(self.module.num_layers)
        self.edges: dict[EdgeType, Tensor] = {
            tuple(et): ei.long().cpu() for et, ei in self.module.edge_index_dict().items()}
        with torch.no_grad():
            self.x0 = {nt: x.detach().float() for nt, x in self._module_inputs().items()}
        self.num_nodes = {nt: x.size(0) for nt, x in self.x0.items()}
        self.stages, self.layer_end = self.module.stage_program(list(self.edges))
        # last_update[p][nt]: the snapshot holding nt's state at snapshot p.
        self.last_update = [dict.fromkeys(self.num_nodes, 0)]
        for index, stage in enumerate(self.stages, start=1):
            self.last_update.append({**self.last_update[-1], stage.dst: index})
        self.by_dst = {et: _CSR(ei[1], self.num_nodes[et[2]]) for et, ei in self.edges.items()}
        self.by_src = {et: _CSR(ei[0], self.num_nodes[et[0]]) for et, ei in self.edges.items()}
        self._lock = threading.Lock()
        self._attribute_nodes: dict[str, tuple[str, list[str]]] | None = None
        self._variants: dict[tuple, list[dict[str, Tensor]]] = {}
        self._need_cache: dict[tuple, dict] = {}
        self.max_cached_variants = int(max_cached_variants)
        with torch.no_grad():
            self.snapshots = self.full_snapshots(self.edges, self.x0)
            ref_user, ref_item = (t.float() for t in model.embeddings())
            self.user_pool, self.item_pool = self._pool_all(self.snapshots)
            # Columns past the graph network's output (e.g. an item bias carried as a last
            # column) must not depend on the graph: they are read from an edge-less pass.
            dim = self.user_pool.size(1)
            self.user_extra, self.item_extra = ref_user[:, dim:], ref_item[:, dim:]
            extras_ok = True
            if self.user_extra.size(1):
                user_free, item_free, _ = self.module.propagate({})
                extras_ok = (torch.allclose(user_free[:, dim:].float(), self.user_extra, atol=1e-5)
                             and torch.allclose(item_free[:, dim:].float(), self.item_extra,
                                                atol=1e-5))
        self.user_emb = torch.cat([self.user_pool, self.user_extra], 1)
        self.item_emb = torch.cat([self.item_pool, self.item_extra], 1)
        scale = float(max(ref_user.abs().max(), ref_item.abs().max(), 1.0))
        self.exact_incremental = bool(
            self.module.conv in _LOCAL_CONVS and extras_ok
            and self.user_emb.shape == ref_user.shape and self.item_emb.shape == ref_item.shape
            and torch.allclose(self.user_emb, ref_user, atol=1e-4 * scale)
            and torch.allclose(self.item_emb, ref_item, atol=1e-4 * scale))
        if not self.exact_incremental:
            self.user_emb, self.item_emb = ref_user.clone(), ref_item.clone()

    # ------------------------------------------------------------------ the program
    def _module_inputs(self) -> dict[str, Tensor]:
        """The network's layer-0 features (eval mode: warm items use their id embedding)."""
        return self.module.input_features(self.module.id_gate(), self.module.text_features())

    def item_extras(self, item_text: dict[int, Tensor] | None = None) -> Tensor:
        """The graph-independent extra item columns with text replacements applied."""
        if not item_text or not self.item_extra.size(1):
            return self.item_extra
        items = sorted(item_text)
        with self._lock:
            buffer = self.module.item_text
            saved = buffer[items].clone()
            try:
                buffer[items] = torch.stack([item_text[i] for i in items])
                _, item_free, _ = self.module.propagate({})
            finally:
                buffer[items] = saved
        extra = self.item_extra.clone()
        extra[items] = item_free[items, self.item_pool.size(1):].float()
        return extra

    # ------------------------------------------------------------------ lookups
    @property
    def attribute_nodes(self) -> dict[str, tuple[str, list[str]]]:
        """Attribute node type -> ``(source column, raw value of each node)``, in the node
        order the model uses (that of :func:`~recsys_core.graph.build_hetero_graph`)."""
        if self._attribute_nodes is None:
            data = build_hetero_graph(self.dataset, interactions=self.dataset.interactions.iloc[:0],
                                      include_user_edges=False)
            columns = {**(getattr(data, "attr_columns", {}) or {}),  # item and user attributes
                       **(getattr(data, "user_attr_columns", {}) or {})}
            self._attribute_nodes = {nt: (col, list(data[nt].node_ids))
                                     for nt, col in columns.items() if nt in self.num_nodes}
        return self._attribute_nodes

    def history(self, user: int) -> np.ndarray:
        """Item indices the user has ``rates`` edges to in the scoring graph (sorted)."""
        pos = self.by_src[RATES].positions(torch.tensor([int(user)]))
        return np.sort(self.edges[RATES][1, pos].numpy())

    def edge_positions(self, edge_type: EdgeType, src: int, dst: Iterable[int]) -> Tensor:
        """Positions of edges ``src -> d`` (``d`` in ``dst``) of one relation."""
        if edge_type not in self.edges:
            return torch.zeros(0, dtype=torch.long)
        pos = self.by_src[edge_type].positions(torch.tensor([int(src)]))
        dst = torch.as_tensor(list(dst), dtype=torch.long)
        return pos[torch.isin(self.edges[edge_type][1, pos], dst)]

    def out_neighbours(self, edge_type: EdgeType, node: int) -> np.ndarray:
        """Targets of ``node``'s edges of one relation."""
        if edge_type not in self.edges:
            return np.zeros(0, dtype=np.int64)
        pos = self.by_src[edge_type].positions(torch.tensor([int(node)]))
        return self.edges[edge_type][1, pos].numpy()

    # ------------------------------------------------------------------ edits
    def history_edit(self, user: int, drop: Iterable[int] = (),
                     add: Iterable[int] = ()) -> GraphEdit:
        """Remove the user's interactions with ``drop`` items and add ones with ``add`` items
        (both directions, ``rates`` and ``rated_by``)."""
        drop = sorted({int(j) for j in drop})
        removed = {}
        if drop:
            if RATES in self.edges:
                removed[RATES] = self.edge_positions(RATES, user, drop)
            if RATED_BY in self.edges:
                removed[RATED_BY] = torch.cat([self.edge_positions(RATED_BY, j, [user])
                                               for j in drop])
        add = sorted({int(j) for j in add} - set(self.history(user).tolist()))
        added = {}
        if add:
            items = torch.tensor(add, dtype=torch.long)
            users = torch.full_like(items, int(user))
            if RATES in self.edges:
                added[RATES] = torch.stack([users, items])
            if RATED_BY in self.edges:
                added[RATED_BY] = torch.stack([items, users])
        return GraphEdit(removed=removed, added=added)

    def attribute_edit(self, item: int, attributes: Iterable[tuple[str, int]]) -> GraphEdit:
        """Remove the item's edges (both directions) to the given ``(node_type, index)``
        attribute nodes."""
        removed: dict[EdgeType, list[Tensor]] = {}
        for node_type, index in attributes:
            for et in self.edges:
                if et[0] == "item" and et[2] == node_type:
                    removed.setdefault(et, []).append(self.edge_positions(et, item, [index]))
                elif et[0] == node_type and et[2] == "item":
                    removed.setdefault(et, []).append(self.edge_positions(et, index, [item]))
        return GraphEdit(removed={et: torch.cat(p) for et, p in removed.items()})

    def neighbour_edit(self, user: int, others: Iterable[int]) -> GraphEdit:
        """Remove every user-user edge between ``user`` and the ``others`` (both relations,
        both directions)."""
        others = [int(v) for v in others]
        removed = {}
        for et in (FOLLOWS, FOLLOWED_BY):
            if et in self.edges and others:
                out = self.edge_positions(et, user, others)
                inc = torch.cat([self.edge_positions(et, v, [user]) for v in others])
                removed[et] = torch.unique(torch.cat([out, inc]))
        return GraphEdit(removed=removed)

    def text_edit(self, item: int, text_embedding: Tensor) -> GraphEdit:
        """Replace the item's frozen text embedding (e.g. its re-encoded, masked text)."""
        return GraphEdit(item_text={int(item): text_embedding.detach().float().cpu()})

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def scores(self, user: int, items: Iterable[int] | None = None,
               edit: GraphEdit | None = None) -> np.ndarray:
        """Scores of ``items`` (default: all) for ``user`` on the edited graph."""
        if edit is None or edit.is_empty:
            z_user = self.user_emb[int(user)]
            z_item = self.item_emb if items is None else self.item_emb[_index(items)]
            return (z_item @ z_user).numpy() + self.item_item_term(user, items)
        if items is None or not self.exact_incremental:
            # Every item's embedding depends on most of the graph: one full pass is cheaper.
            z_user, z_item = self.full_embeddings(edit)
            z_item = z_item if items is None else z_item[_index(items)]
            return (z_item @ z_user[int(user)]).numpy() + self.item_item_term(user, items, edit)
        return self.scores_many(user, items, [edit])[0]

    def edited_history(self, user: int, edit: GraphEdit | None = None) -> np.ndarray:
        """Items of the user's ``rates`` edges after ``edit`` (sorted, distinct)."""
        if RATES not in self.edges:
            return np.zeros(0, dtype=np.int64)
        pos = self.by_src[RATES].positions(torch.tensor([int(user)]))
        if edit is not None and RATES in edit.removed:
            pos = pos[~torch.isin(pos, edit.removed[RATES])]
        items = self.edges[RATES][1, pos]
        if edit is not None and RATES in edit.added:
            added = edit.added[RATES]
            items = torch.cat([items, added[1, added[0] == int(user)]])
        return np.unique(items.numpy())

    def item_item_term(self, user: int, items: Iterable[int] | None = None,
                       edit: GraphEdit | None = None) -> np.ndarray | float:
        """The item-item path's term for ``user`` on the edited graph (0 when off)."""
        if self.item_item is None:
            return 0.0
        history = self.edited_history(user, edit)
        row = sp.csr_matrix((np.ones(len(history), np.float32),
                             (np.zeros(len(history), np.int64), history)),
                            shape=(1, self.num_nodes["item"]))
        return self.item_item.scores(row, None if items is None else _index(items).numpy())[0]

    def weighted_scores(self, user: int, item: int,
                        edge_weights: dict[EdgeType, tuple[Tensor, Tensor]],
                        convs: torch.nn.ModuleList) -> Tensor:
        """The pair's score ``[1]`` when the given edges' messages (and, for ``rates``
        edges, their item-item terms) are scaled by differentiable weights (GNNExplainer's
        soft masks)."""
        users, items = torch.tensor([int(user)]), torch.tensor([int(item)])
        z_user, z_item = self.weighted_embeddings(users, items, edge_weights, convs)
        score = (z_user * z_item).sum(-1)
        if self.item_item is None or RATES not in self.edges:
            return score
        pos = self.by_src[RATES].positions(users)
        terms = self.item_item.pair_weights(self.edges[RATES][1, pos], items)[:, 0]
        if RATES in edge_weights:
            masked, weights = edge_weights[RATES]
            match = (pos.view(-1, 1) == masked.view(1, -1)).to(weights.dtype)
            scale = 1.0 + match @ (weights - 1.0)  # masked edges take their weight, others 1
            return score + (scale * terms).sum()
        return score + terms.sum()

    @torch.no_grad()
    def full_embeddings(self, edit: GraphEdit) -> tuple[Tensor, Tensor]:
        """Every user's and item's final embedding on the edited graph (one full pass)."""
        if not self.exact_incremental:
            return self._module_pass(edit)
        snapshots = self.full_snapshots(self.edited_edges(edit), self.input_features(edit))
        user_pool, item_pool = self._pool_all(snapshots)
        return (torch.cat([user_pool, self.user_extra], 1),
                torch.cat([item_pool, self.item_extras(edit.item_text)], 1))

    @torch.no_grad()
    def scores_many(self, user: int, items: Iterable[int], edits: list[GraphEdit]) -> np.ndarray:
        """Scores ``[len(edits), len(items)]`` of ``items`` for ``user`` under each edit,
        evaluated together (much faster than one :meth:`scores` call per edit)."""
        users_t = torch.tensor([int(user)])
        items_t = _index(items)
        out = np.empty((len(edits), len(items_t)), dtype=np.float32)
        if not self.exact_incremental:
            for b, edit in enumerate(edits):
                z_user, z_item = self._module_pass(edit)
                out[b] = ((z_item[items_t] @ z_user[int(user)]).numpy()
                          + self.item_item_term(user, items_t, edit))
            return out
        added: dict[EdgeType, list[Tensor]] = {}
        for edit in edits:
            for et, ei in edit.added.items():
                added.setdefault(et, []).append(ei)
        need = self.needed(users_t, items_t, {et: torch.cat(p, 1) for et, p in added.items()})
        groups: dict[tuple, list[int]] = {}
        for b, edit in enumerate(edits):
            groups.setdefault(_text_key(edit.item_text), []).append(b)
        for members in groups.values():
            text = edits[members[0]].item_text
            base = self._text_variant(text, need)
            graph_edits = [GraphEdit(edits[b].removed, edits[b].added) for b in members]
            overrides = self._overrides(base, graph_edits, need)
            item_extra = self.item_extras(text)[items_t]
            for b, patch in zip(members, overrides, strict=True):
                z_user, z_item = self.pool_targets(base, patch, users_t, items_t)
                z_user = torch.cat([z_user, self.user_extra[users_t]], 1)
                z_item = torch.cat([z_item, item_extra], 1)
                out[b] = ((z_user @ z_item.T).numpy()[0]
                          + self.item_item_term(user, items_t, edits[b]))
        return out

    def pool_targets(self, base: list[dict[str, Tensor]], patch: dict, users: Tensor,
                     items: Tensor) -> tuple[Tensor, Tensor]:
        """Graph embeddings (without extra columns) of the targets from base snapshots plus an
        edit's recomputed states, by the module's readout (differentiable)."""
        readout = self.module.readout
        return (readout([self.state(base, patch, p, "user", users) for p in self.layer_end]),
                readout([self.state(base, patch, p, "item", items) for p in self.layer_end]))

    def state(self, base: list[dict[str, Tensor]], patch: dict, snapshot: int, node_type: str,
              nodes: Tensor) -> Tensor:
        """Rows of ``node_type`` at ``snapshot``: base rows with the patch's recomputed ones."""
        holder = self.last_update[snapshot][node_type]
        return _patched_rows(base[holder][node_type], patch.get((holder, node_type)), nodes)

    def _module_pass(self, edit: GraphEdit) -> tuple[Tensor, Tensor]:
        """The model's own full forward pass on the edited graph (the safe fallback)."""
        with self._lock:
            buffer = self.module.item_text
            rows = sorted(edit.item_text)
            saved = buffer[rows].clone()
            try:
                if rows:
                    buffer[rows] = torch.stack([edit.item_text[i] for i in rows])
                user_emb, item_emb, _ = self.module.propagate(self.edited_edges(edit))
            finally:
                if rows:
                    buffer[rows] = saved
        return user_emb.float(), item_emb.float()

    # ------------------------------------------------------------------ internals
    def edited_edges(self, edit: GraphEdit | None) -> dict[EdgeType, Tensor]:
        """The whole edited edge dict (for full passes)."""
        if edit is None:
            return dict(self.edges)
        out = {}
        for et, ei in self.edges.items():
            if et in edit.removed and edit.removed[et].numel():
                keep = torch.ones(ei.size(1), dtype=torch.bool)
                keep[edit.removed[et]] = False
                ei = ei[:, keep]
            if et in edit.added and edit.added[et].numel():
                ei = torch.cat([ei, edit.added[et]], dim=1)
            out[et] = ei
        return out

    def input_features(self, edit: GraphEdit | None = None) -> dict[str, Tensor]:
        """Layer-0 features with the edit's text replacements applied."""
        if edit is None or not edit.item_text:
            return self.x0
        items = sorted(edit.item_text)
        with self._lock:  # the private module's text buffer is patched briefly
            buffer = self.module.item_text
            saved = buffer[items].clone()
            try:
                buffer[items] = torch.stack([edit.item_text[i] for i in items])
                rows = self._module_inputs()["item"][items].float()
            finally:
                buffer[items] = saved
        x0 = dict(self.x0)
        x0["item"] = self.x0["item"].clone()
        x0["item"][items] = rows
        return x0

    def full_snapshots(self, edges: dict[EdgeType, Tensor],
                       x0: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """Every node's state after each stage (index 0 = inputs), by the module's program."""
        snapshots = [x0]
        for stage in self.stages:
            out = self.module.run_stage(stage, snapshots[-1], snapshots[stage.target][stage.dst],
                                        edges)
            snapshots.append({**snapshots[-1], stage.dst: out.float()})
        return snapshots

    def _pool_all(self, snapshots: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """Every user's and item's graph embedding from full snapshots."""
        return (self.module.readout([snapshots[p]["user"] for p in self.layer_end]),
                self.module.readout([snapshots[p]["item"] for p in self.layer_end]))

    def incoming(self, edge_type: EdgeType, nodes: Tensor, edit: GraphEdit | None = None) -> Tensor:
        """``[2, k]`` edges of one relation into ``nodes`` on the edited graph."""
        return self.incoming_with_positions(edge_type, nodes, edit)[0]

    def incoming_with_positions(self, edge_type: EdgeType, nodes: Tensor,
                                edit: GraphEdit | None = None) -> tuple[Tensor, Tensor]:
        """Edges into ``nodes`` and their positions in :attr:`edges` (-1 for added edges)."""
        ei = self.edges[edge_type]
        pos = self.by_dst[edge_type].positions(nodes)
        if edit is not None and edge_type in edit.removed and edit.removed[edge_type].numel():
            pos = pos[~torch.isin(pos, edit.removed[edge_type])]
        out = ei[:, pos]
        if edit is not None and edge_type in edit.added and edit.added[edge_type].numel():
            extra = edit.added[edge_type]
            extra = extra[:, torch.isin(extra[1], nodes)]
            out = torch.cat([out, extra], dim=1)
            pos = torch.cat([pos, torch.full((extra.size(1),), -1, dtype=torch.long)])
        return out, pos

    def _outgoing_targets(self, edge_type: EdgeType, nodes: Tensor, edit: GraphEdit) -> Tensor:
        ei = self.edges[edge_type]
        pos = self.by_src[edge_type].positions(nodes)
        if edge_type in edit.removed and edit.removed[edge_type].numel():
            pos = pos[~torch.isin(pos, edit.removed[edge_type])]
        targets = ei[1, pos]
        if edge_type in edit.added and edit.added[edge_type].numel():
            extra = edit.added[edge_type]
            targets = torch.cat([targets, extra[1, torch.isin(extra[0], nodes)]])
        return targets

    def needed(self, users: Tensor, items: Tensor | None,
               added: dict[EdgeType, Tensor] | None = None) -> dict[tuple[int, str], Tensor | None]:
        """``(stage, node_type) -> nodes`` whose state after that stage reaches the targets'
        embeddings (``None`` = every node; only for the stage's own target type). Removed
        edges are ignored (a superset stays exact); added edges are followed."""
        added = {et: ei for et, ei in (added or {}).items() if ei.numel()}
        key = None
        if not added:
            key = (tuple(users.tolist()), None if items is None else tuple(items.tolist()))
            if key in self._need_cache:
                return self._need_cache[key]
        grow = GraphEdit(added=added)
        pending: dict[str, list | None] = {nt: [] for nt in self.num_nodes}
        deferred: dict[tuple[int, str], list | None] = {}

        def add(store: dict, key, nodes: Tensor | None) -> None:
            if nodes is _ALL or store.get(key, []) is _ALL:
                store[key] = _ALL
            else:
                store.setdefault(key, []).append(nodes)

        for position in self.layer_end:  # the readout reads every layer's end state
            add(deferred, (position, "user"), users)
            add(deferred, (position, "item"), items)
        need: dict[tuple[int, str], Tensor | None] = {}
        for position in range(len(self.stages), 0, -1):
            for nt in self.num_nodes:
                if (position, nt) in deferred:
                    add(pending, nt, deferred.pop((position, nt)) if deferred[(position, nt)]
                        is _ALL else torch.cat(deferred.pop((position, nt))))
            stage = self.stages[position - 1]
            wanted = pending[stage.dst]
            if wanted is not _ALL:
                if not wanted:
                    continue
                wanted = torch.unique(torch.cat(wanted))
            need[(position, stage.dst)] = wanted
            pending[stage.dst] = []
            if position == 1:
                continue  # snapshot 0 holds the inputs: never recomputed
            for et in stage.relations:
                add(pending, et[0], _ALL if wanted is _ALL else self.incoming(et, wanted, grow)[0])
            if stage.target == position - 1:  # read (and, accumulating, added to)
                add(pending, stage.dst, wanted)
            elif stage.target > 0:
                add(deferred, (stage.target, stage.dst), wanted)
        if key is not None:
            if len(self._need_cache) > 256:
                self._need_cache.clear()
            self._need_cache[key] = need
        return need

    def _text_variant(self, item_text: dict[int, Tensor], need: dict) -> list[dict[str, Tensor]]:
        """Base snapshots for a text variant: exact for every needed state."""
        if not item_text:
            return self.snapshots
        key = (id(need), _text_key(item_text))
        with self._lock:
            cached = self._variants.get(key)
        if cached is not None:
            return cached[1]
        x0 = self.input_features(GraphEdit(item_text=item_text))
        changed = {(0, "item"): torch.tensor(sorted(item_text), dtype=torch.long)}
        base = [x0] + self.snapshots[1:]
        patch = self._overrides(base, [GraphEdit()], need, [changed])[0]
        snapshots = [x0]
        for position in range(1, len(self.stages) + 1):
            current = dict(base[position])
            dst = self.stages[position - 1].dst
            if (position, dst) in patch:
                nodes, rows = patch[(position, dst)]
                current[dst] = current[dst].clone().index_put((nodes,), rows)
            for nt in current:  # types this stage did not update share the previous tensor
                if nt != dst:
                    current[nt] = snapshots[-1][nt]
            snapshots.append(current)
        with self._lock:
            if len(self._variants) >= self.max_cached_variants:
                self._variants.pop(next(iter(self._variants)))
            self._variants[key] = (need, snapshots)  # holds ``need`` so its id stays unique
        return snapshots

    def _overrides(
        self,
        base: list[dict[str, Tensor]],
        edits: list[GraphEdit],
        need: dict,
        changed: list[dict[tuple[int, str], Tensor]] | None = None,
        edge_weights: list[dict[EdgeType, tuple[Tensor, Tensor]]] | None = None,
        convs: list | None = None,
    ) -> list[dict[tuple[int, str], tuple[Tensor, Tensor]]]:
        """Recompute, on top of ``base`` snapshots, the needed states each edit changes.

        The edits are evaluated together: at every stage one call of each relation's
        convolution serves all of them (their recomputed nodes side by side).

        Args:
            base: Snapshots all edits start from.
            edits: Edge edits (their ``item_text`` is ignored: it is part of ``base``).
            need: :meth:`needed` for the targets.
            changed: Per edit, ``(snapshot, type) -> nodes`` whose state in ``base`` already
                differs from the clean one (text variants).
            edge_weights: Per edit, relation -> ``(positions, weights)``: those edges'
                messages are multiplied by the (differentiable) weights through PyG's explain
                masks, which needs ``convs``, message-passing twins of the layers
                (:meth:`explainable_convs`).
            convs: Layers to use instead of the model's own.

        Returns:
            Per edit, ``(snapshot, type) -> (sorted nodes, rows)``: the recomputed states.
        """
        count = len(edits)
        changed = [dict(c) for c in (changed or [{} for _ in range(count)])]
        edge_weights = edge_weights or [{} for _ in range(count)]
        touched: list[dict[EdgeType, Tensor]] = []
        dense_weights: list[dict[EdgeType, Tensor]] = []
        for edit, weights in zip(edits, edge_weights, strict=True):
            parts: dict[EdgeType, list[Tensor]] = {}
            for et, pos in edit.removed.items():
                parts.setdefault(et, []).append(self.edges[et][1, pos])
            for et, ei in edit.added.items():
                parts.setdefault(et, []).append(ei[1])
            dense = {}
            for et, (pos, weight) in weights.items():
                parts.setdefault(et, []).append(self.edges[et][1, pos])
                dense[et] = torch.ones(self.edges[et].size(1), dtype=weight.dtype).index_put(
                    (pos,), weight)
            touched.append({et: torch.cat(p) for et, p in parts.items()})
            dense_weights.append(dense)
        overrides: list[dict[tuple[int, str], tuple[Tensor, Tensor]]] = [{} for _ in range(count)]

        def changed_at(b: int, snapshot: int, node_type: str) -> Tensor | None:
            return changed[b].get((self.last_update[snapshot][node_type], node_type))

        for position, stage in enumerate(self.stages, start=1):
            wanted = need.get((position, stage.dst), [])
            if wanted is not _ALL and not len(wanted):
                continue
            recompute: list[Tensor | None] = []
            for b, edit in enumerate(edits):
                dirty = [touched[b][et] for et in stage.relations if et in touched[b]]
                own = changed_at(b, stage.target, stage.dst)
                if own is not None:
                    dirty.append(own)  # attention reads the target (and accumulating adds to it)
                for et in stage.relations:
                    source = changed_at(b, position - 1, et[0])
                    if source is not None and source.numel():
                        dirty.append(self._outgoing_targets(et, source, edit))
                nodes = torch.unique(torch.cat(dirty)) if dirty else None
                if nodes is not None and wanted is not _ALL:
                    nodes = nodes[torch.isin(nodes, wanted)]
                recompute.append(nodes if nodes is not None and nodes.numel() else None)
            active = [b for b in range(count) if recompute[b] is not None]
            if not active:
                continue
            layer_convs = (convs or self.module.convs)[stage.layer - 1]
            target_holder = self.last_update[stage.target][stage.dst]
            # The active edits' recomputed nodes side by side: per source type the union of
            # the sources each edit's nodes read, per relation edges into those local rows.
            source_types = list(dict.fromkeys(et[0] for et in stage.relations))
            sources: dict[str, list[Tensor]] = {nt: [] for nt in source_types}
            index: dict[EdgeType, list[Tensor]] = {et: [] for et in stage.relations}
            masks: dict[EdgeType, list[Tensor]] = {et: [] for et in stage.relations}
            targets: list[Tensor] = []
            src_offset = dict.fromkeys(source_types, 0)
            dst_offset = 0
            for b in active:
                nodes = recompute[b]
                incoming = {et: self.incoming_with_positions(et, nodes, edits[b])
                            for et in stage.relations}
                for nt in source_types:
                    src = torch.unique(torch.cat([ei[0] for et, (ei, _) in incoming.items()
                                                  if et[0] == nt]))
                    holder = self.last_update[position - 1][nt]
                    sources[nt].append(_patched_rows(base[holder][nt],
                                                     overrides[b].get((holder, nt)), src))
                    for et, (ei, pos) in incoming.items():
                        if et[0] != nt:
                            continue
                        index[et].append(torch.stack([
                            torch.searchsorted(src, ei[0]) + src_offset[nt],
                            torch.searchsorted(nodes, ei[1]) + dst_offset]))
                        masks[et].append(dense_weights[b][et][pos] if et in dense_weights[b]
                                         else torch.ones(pos.numel()))
                    src_offset[nt] += src.numel()
                targets.append(_patched_rows(base[target_holder][stage.dst],
                                             overrides[b].get((target_holder, stage.dst)), nodes))
                dst_offset += nodes.numel()
            local = {et: torch.cat(index[et], dim=1) for et in stage.relations}
            weighted = [et for et in stage.relations
                        if any(et in dense_weights[b] for b in active)]
            for et in weighted:
                set_masks(layer_convs["__".join(et)], torch.cat(masks[et]), local[et],
                          apply_sigmoid=False)
            try:
                total = self.module.run_stage(
                    stage, {nt: torch.cat(rows) for nt, rows in sources.items()},
                    torch.cat(targets), local, convs=layer_convs)
            finally:
                for et in weighted:
                    clear_masks(layer_convs["__".join(et)])
            start = 0
            for b in active:
                nodes = recompute[b]
                overrides[b][(position, stage.dst)] = (nodes,
                                                       total[start:start + nodes.numel()].float())
                changed[b][(position, stage.dst)] = nodes
                start += nodes.numel()
        return overrides

    # ------------------------------------------------------------------ explainers
    def explainable_convs(self) -> torch.nn.ModuleList:
        """A private copy of the layers as PyG message-passing convolutions (same weights),
        so that PyG's explain masks and message hooks apply; the flagship's sparse GAT
        becomes :class:`torch_geometric.nn.GATConv`. Checked to give the same outputs."""
        layers = torch.nn.ModuleList()
        for convs in self.module.convs:
            converted = torch.nn.ModuleDict()
            for key, conv in convs.items():
                et = tuple(key.split("__"))
                if et not in self.edges:  # a side-information group validation switched off
                    continue
                twin = _message_passing_twin(conv)
                ei = self.edges[et][:, :256]
                args = ((self.x0[et[0]], self.x0[et[2]]), ei)
                with torch.no_grad():
                    if not torch.allclose(conv(*args), twin(*args), atol=1e-4, rtol=1e-4):
                        raise RuntimeError(f"Cannot mirror the {type(conv).__name__} of relation "
                                           f"{key} as a message-passing layer.")
                converted[key] = twin
            layers.append(converted)
        return layers

    def weighted_embeddings(self, users: Tensor, items: Tensor,
                            edge_weights: dict[EdgeType, tuple[Tensor, Tensor]],
                            convs: torch.nn.ModuleList) -> tuple[Tensor, Tensor]:
        """Final embeddings (with extra columns) of the targets when the given edges' messages
        are scaled by differentiable weights (GNNExplainer's soft masks)."""
        need = self.needed(users, items)
        patch = self._overrides(self.snapshots, [GraphEdit()], need, None, [edge_weights],
                                convs)[0]
        z_user, z_item = self.pool_targets(self.snapshots, patch, users, items)
        return (torch.cat([z_user, self.user_extra[users]], 1),
                torch.cat([z_item, self.item_extra[items]], 1))


def _patched_rows(full: Tensor, patch: tuple[Tensor, Tensor] | None, nodes: Tensor) -> Tensor:
    """``full[nodes]`` with the rows of ``patch = (sorted nodes, rows)`` replacing theirs."""
    out = full[nodes]
    if patch is not None:
        hit = torch.isin(nodes, patch[0])
        if hit.any():
            out = out.index_put((hit.nonzero().view(-1),),
                                patch[1][torch.searchsorted(patch[0], nodes[hit])])
    return out


def _message_passing_twin(conv: torch.nn.Module) -> MessagePassing:
    if isinstance(conv, MessagePassing):
        return copy.deepcopy(conv).eval().requires_grad_(False)
    if all(hasattr(conv, name) for name in ("lin_src", "lin_dst", "att_src", "att_dst", "bias")):
        twin = GATConv((conv.in_channels, conv.in_channels), conv.out_channels, heads=conv.heads,
                       concat=True, negative_slope=conv.negative_slope, add_self_loops=False)
        twin.load_state_dict(conv.state_dict())
        return twin.eval().requires_grad_(False)
    raise RuntimeError(f"No message-passing equivalent of {type(conv).__name__}.")


def _index(items: Iterable[int]) -> Tensor:
    return torch.as_tensor(np.asarray(list(items), dtype=np.int64))


def _text_key(item_text: dict[int, Tensor]) -> tuple:
    return tuple((i, v.numpy().tobytes()) for i, v in sorted(item_text.items()))


_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def flagship_engine(model) -> FlagshipEngine:
    """The (cached) :class:`FlagshipEngine` of a fitted flagship model.

    Built once per model object (one full forward pass) and reused; the model is never
    modified, so the cache stays valid for the model's lifetime.
    """
    with _ENGINES_LOCK:
        engine = _ENGINES.get(model)
        if engine is None or engine.module_source is not model.module:
            engine = FlagshipEngine(model)
            _ENGINES[model] = engine
        return engine


def is_flagship(model) -> bool:
    """Whether ``model`` is the graph-attention flagship (``gnn-llm``)."""
    from ..models.gnn_llm import GNNLLMRecommender

    return isinstance(model, GNNLLMRecommender)
