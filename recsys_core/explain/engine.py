"""Fast, exact re-scoring of the flagship on edited graphs (no retraining).

Explanations evaluate the flagship :class:`~recsys_core.models.gnn_llm.GNNLLMRecommender` on
hundreds of slightly edited graphs (a few of the user's interactions removed, an attribute
edge of the item removed, the item's text re-encoded). A full forward pass over the whole
graph costs ~0.2 s on a 2-core CPU for MovieLens-sized data, too slow for that. A graph
network's layer-``l`` state of a node only changes when one of its incoming edges changes or
one of its sources changed at layer ``l - 1``; and a score only needs the states of the nodes
within ``L - l`` hops of the (user, item) pair at layer ``l``. :class:`FlagshipEngine` keeps
every node's clean per-layer state from one full pass and, for an edit, recomputes only the
states that are both *changed* and *needed*, with the model's own convolutions over those
nodes' complete (edited) incoming edge sets. The result is exact, not an approximation:
the engine checks at construction that its layer loop reproduces the model's embeddings and
otherwise falls back to full forward passes of the model.
"""

from __future__ import annotations

import copy
import inspect
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.nn import GATConv, MessagePassing

from ..graph import FOLLOWED_BY, FOLLOWS, RATED_BY, RATES, build_hetero_graph

EdgeType = tuple[str, str, str]

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


class FlagshipEngine:
    r"""Exact incremental re-scoring of a fitted ``GNNLLMRecommender`` on edited graphs.

    The engine works on a private copy of the model's network (the shared model is never
    modified, so it is safe to use from several threads) and mirrors
    :meth:`GNNLLMModule.propagate`: per layer, node types are updated in ``update_order``,
    each as the sum of its incoming relations' convolutions, with sources taken from their
    freshest state (this layer's when updated earlier in the order); users pool layers
    ``1..L``, items layers ``0..L``. Construction runs one full pass and checks the mirror
    against the model's cached embeddings; when they disagree (:attr:`exact_incremental` is
    ``False``) every query falls back to a full forward pass.

    A query's states are computed in two steps, both exact: the item text replacements (which
    reach far through the graph) give *base* states, cached per text variant; the edge edits
    are then applied incrementally on top of that base.

    Args:
        model (GNNLLMRecommender): A fitted flagship model.
        max_cached_variants (int): Text variants whose base states are kept. (default: :obj:`64`)
    """

    def __init__(self, model, max_cached_variants: int = 64) -> None:
        if getattr(model, "module", None) is None or getattr(model, "dataset", None) is None:
            raise RuntimeError("The model is not fitted.")
        self.model = model
        self.module_source = model.module
        self.dataset = model.dataset
        self.module = copy.deepcopy(model.module).to("cpu").eval()
        self.module.requires_grad_(False)
        self.num_layers = int(self.module.num_layers)
        self.edges: dict[EdgeType, Tensor] = {
            tuple(et): ei.long().cpu() for et, ei in self.module.edge_index_dict().items()}
        with torch.no_grad():
            self.x0 = {nt: x.detach().float() for nt, x in self._module_inputs().items()}
        self.num_nodes = {nt: x.size(0) for nt, x in self.x0.items()}
        order = getattr(self.module, "update_order", None)
        self.sequential = order is not None
        self.order = [nt for nt in (order or self._dst_types()) if nt in self.num_nodes]
        self.by_dst = {et: _CSR(ei[1], self.num_nodes[et[2]]) for et, ei in self.edges.items()}
        self.by_src = {et: _CSR(ei[0], self.num_nodes[et[0]]) for et, ei in self.edges.items()}
        self._lock = threading.Lock()
        self._attribute_nodes: dict[str, tuple[str, list[str]]] | None = None
        self._variants: dict[tuple, list[dict[str, Tensor]]] = {}
        self._need_cache: dict[tuple, dict[tuple[int, str], Tensor]] = {}
        self.max_cached_variants = int(max_cached_variants)
        with torch.no_grad():
            self.layers = self.full_layers(self.edges, self.x0)
            self.user_pool, self.item_pool = self._pool(self.layers)
            ref_user, ref_item = (t.float() for t in model.embeddings())
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

    def _module_inputs(self) -> dict[str, Tensor]:
        """The network's layer-0 features (eval mode: warm items use their id embedding)."""
        module = self.module
        arguments = []
        for name in inspect.signature(module.input_features).parameters:
            if name == "gate":
                arguments.append(module.id_gate())
            elif name == "text":
                text = getattr(module, "text_features", None)
                arguments.append(text() if callable(text) else module.item_text)
            else:
                raise TypeError(f"Unexpected input_features argument {name!r}.")
        return module.input_features(*arguments)

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

    def _dst_types(self) -> list[str]:
        seen: list[str] = []
        for et in self.edges:
            if et[2] not in seen:
                seen.append(et[2])
        return seen

    def source_layer(self, edge_type: EdgeType, layer: int) -> int:
        """Which layer's state of the source a relation reads when its target type is updated
        in ``layer``: this layer's when the source type is updated earlier in the order."""
        src, dst = edge_type[0], edge_type[2]
        if (self.sequential and src != dst and src in self.order
                and self.order.index(src) < self.order.index(dst)):
            return layer
        return layer - 1

    # ------------------------------------------------------------------ lookups
    @property
    def attribute_nodes(self) -> dict[str, tuple[str, list[str]]]:
        """Attribute node type -> ``(source column, raw value of each node)``, in the node
        order the model uses (that of :func:`~recsys_core.graph.build_hetero_graph`)."""
        if self._attribute_nodes is None:
            data = build_hetero_graph(self.dataset, interactions=self.dataset.interactions.iloc[:0],
                                      include_user_edges=False)
            columns = getattr(data, "attr_columns", {}) or {}
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
    def history_edit(self, user: int, drop: Iterable[int] = (), add: Iterable[int] = ()) -> GraphEdit:
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
        if items is not None and edit is not None and not edit.is_empty and self.exact_incremental:
            return self.scores_many(user, items, [edit])[0]
        z_user, z_item = self.embeddings([user], items, edit)
        return (z_user @ z_item.T).numpy()[0]

    @torch.no_grad()
    def embeddings(self, users: Iterable[int], items: Iterable[int] | None = None,
                   edit: GraphEdit | None = None) -> tuple[Tensor, Tensor]:
        """Final embeddings of ``users`` and ``items`` (default: all items) on the edited graph.

        Returns:
            ``(user_emb [len(users), d], item_emb [len(items), d])``.
        """
        users_t = torch.as_tensor(np.asarray(list(users), dtype=np.int64))
        items_t = (None if items is None
                   else torch.as_tensor(np.asarray(list(items), dtype=np.int64)))
        all_items = torch.arange(self.num_nodes["item"]) if items_t is None else items_t
        if edit is None or edit.is_empty:
            return self.user_emb[users_t], self.item_emb[all_items]
        if not self.exact_incremental or items_t is None:
            # Every item's embedding depends on most of the graph: one full pass is cheaper.
            if not self.exact_incremental:
                return self._module_pass(edit, users_t, all_items)
            user_emb, item_emb = self._pool(self.full_layers(self.edited_edges(edit),
                                                             self.input_features(edit)))
            return self._with_extras(user_emb[users_t], item_emb[all_items], users_t, all_items,
                                     edit.item_text)
        user_emb, item_emb = self.pool_targets(self.layer_states(edit, users_t, items_t),
                                               users_t, all_items)
        return self._with_extras(user_emb, item_emb, users_t, all_items, edit.item_text)

    def _with_extras(self, user_emb: Tensor, item_emb: Tensor, users: Tensor, items: Tensor,
                     item_text: dict[int, Tensor]) -> tuple[Tensor, Tensor]:
        item_extra = self.item_extras(item_text)
        return (torch.cat([user_emb, self.user_extra[users]], 1),
                torch.cat([item_emb, item_extra[items]], 1))

    def _module_pass(self, edit: GraphEdit, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
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
        return user_emb[users].float(), item_emb[items].float()

    def layer_states(self, edit: GraphEdit | None, users: Tensor,
                     items: Tensor | None) -> list[dict[str, Tensor]]:
        """Per-layer node states on the edited graph, exact for every node the given targets'
        embeddings depend on (other rows may be stale). ``items=None`` means all items."""
        edit = edit or GraphEdit()
        need = self.needed(users, items, edit.added)
        base = self._text_variant(edit.item_text, users, items, need)
        graph_only = GraphEdit(edit.removed, edit.added)
        if graph_only.is_empty:
            return base
        return self._incremental(base, graph_only, need, {})

    # ------------------------------------------------------------------ internals
    def edited_edges(self, edit: GraphEdit | None) -> dict[EdgeType, Tensor]:
        """The whole edited edge dict (for full passes and GNNExplainer)."""
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

    def full_layers(self, edges: dict[EdgeType, Tensor],
                    x0: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """Every node's state after each layer (index 0 = inputs), by the mirrored loop."""
        layers = [x0]
        for layer in range(1, self.num_layers + 1):
            convs = self.module.convs[layer - 1]
            current = dict(layers[-1])
            layers.append(current)
            for dst in self.order:
                total = None
                for et, ei in edges.items():
                    if et[2] != dst:
                        continue
                    src = layers[self.source_layer(et, layer)][et[0]]
                    h = convs["__".join(et)]((src, layers[layer - 1][dst]), ei)
                    total = h if total is None else total + h
                if total is not None:
                    current[dst] = total.float()
        return layers

    def _pool(self, layers: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        user = torch.stack([layers[layer]["user"] for layer in range(1, len(layers))]).mean(0)
        item = torch.stack([layers[layer]["item"] for layer in range(len(layers))]).mean(0)
        return user, item

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
        """``(layer, node_type) -> nodes`` whose state at that layer reaches the targets'
        embeddings (``None`` = every node). Removed edges are ignored (a superset stays
        exact); added edges are followed."""
        added = {et: ei for et, ei in (added or {}).items() if ei.numel()}
        key = None
        if not added:
            key = (tuple(users.tolist()), None if items is None else tuple(items.tolist()))
            if key in self._need_cache:
                return self._need_cache[key]
        lists: dict[tuple[int, str], list[Tensor]] = {}
        everything: set[tuple[int, str]] = set()
        for layer in range(1, self.num_layers + 1):
            lists.setdefault((layer, "user"), []).append(users)
        for layer in range(0, self.num_layers + 1):
            if items is None:
                everything.add((layer, "item"))
            else:
                lists.setdefault((layer, "item"), []).append(items)
        grow = GraphEdit(added=added)
        need: dict[tuple[int, str], Tensor | None] = {}
        for layer in range(self.num_layers, 0, -1):
            for dst in reversed(self.order):
                key_dst = (layer, dst)
                if key_dst in everything:
                    need[key_dst] = None
                    nodes = None
                else:
                    parts = lists.get(key_dst)
                    if not parts:
                        continue
                    nodes = torch.unique(torch.cat(parts))
                    need[key_dst] = nodes
                for et in self.edges:
                    if et[2] != dst:
                        continue
                    src_key = (self.source_layer(et, layer), et[0])
                    if nodes is None:
                        everything.add(src_key)
                    elif src_key not in everything:
                        lists.setdefault(src_key, []).append(self.incoming(et, nodes, grow)[0])
                prev_key = (layer - 1, dst)
                if nodes is None:
                    everything.add(prev_key)
                elif prev_key not in everything:
                    lists.setdefault(prev_key, []).append(nodes)
        if key is not None:
            if len(self._need_cache) > 256:
                self._need_cache.clear()
            self._need_cache[key] = need
        return need

    def _text_variant(self, item_text: dict[int, Tensor], users: Tensor, items: Tensor | None,
                      need: dict) -> list[dict[str, Tensor]]:
        if not item_text:
            return self.layers
        key = (tuple(users.tolist()), None if items is None else tuple(items.tolist()),
               tuple((i, v.numpy().tobytes()) for i, v in sorted(item_text.items())))
        with self._lock:
            cached = self._variants.get(key)
        if cached is not None:
            return cached
        edit = GraphEdit(item_text=item_text)
        x0 = self.input_features(edit)
        changed = {(0, "item"): torch.tensor(sorted(item_text), dtype=torch.long)}
        base = [x0] + self.layers[1:]
        layers = self._incremental(base, GraphEdit(), need, changed)
        with self._lock:
            if len(self._variants) >= self.max_cached_variants:
                self._variants.pop(next(iter(self._variants)))
            self._variants[key] = layers
        return layers

    def _incremental(self, base: list[dict[str, Tensor]], edit: GraphEdit, need: dict,
                     changed: dict[tuple[int, str], Tensor],
                     edge_weights: dict[EdgeType, tuple[Tensor, Tensor]] | None = None,
                     convs: list | None = None) -> list[dict[str, Tensor]]:
        """Full per-layer states after one edit (see :meth:`_overrides`)."""
        overrides = self._overrides(base, [edit], need, [changed], [edge_weights or {}], convs)[0]
        layers = [base[0]]
        for layer in range(1, self.num_layers + 1):
            current = dict(base[layer])
            for nt in current:
                if (layer, nt) in overrides:
                    nodes, rows = overrides[(layer, nt)]
                    current[nt] = current[nt].clone().index_put((nodes,), rows)
            layers.append(current)
        return layers

    def _overrides(
        self,
        base: list[dict[str, Tensor]],
        edits: list[GraphEdit],
        need: dict,
        changed: list[dict[tuple[int, str], Tensor]] | None = None,
        edge_weights: list[dict[EdgeType, tuple[Tensor, Tensor]]] | None = None,
        convs: list | None = None,
    ) -> list[dict[tuple[int, str], tuple[Tensor, Tensor]]]:
        """Recompute, on top of ``base`` states, the needed states each edit changes.

        The edits are evaluated together: at every (layer, node type) step one call of each
        relation's convolution serves all of them (their recomputed nodes side by side).

        Args:
            base: Per-layer states all edits start from.
            edits: Edge edits (their ``item_text`` is ignored: it is part of ``base``).
            need: :meth:`needed` for the targets.
            changed: Per edit, ``(layer, type) -> nodes`` whose state in ``base`` already
                differs from the clean one (text variants).
            edge_weights: Per edit, relation -> ``(positions, weights)``: those edges'
                messages are multiplied by the (differentiable) weights through PyG's explain
                masks, which needs ``convs``, message-passing twins of the layers
                (:meth:`explainable_convs`).
            convs: Layers to use instead of the model's own.

        Returns:
            Per edit, ``(layer, type) -> (nodes, rows)``: the recomputed states.
        """
        count = len(edits)
        changed = [dict(c) for c in (changed or [{} for _ in range(count)])]
        edge_weights = edge_weights or [{} for _ in range(count)]
        touched: list[dict[str, Tensor]] = []
        full_weights: list[dict[EdgeType, Tensor]] = []
        for edit, weights in zip(edits, edge_weights, strict=True):
            parts: dict[str, list[Tensor]] = {}
            for et, pos in edit.removed.items():
                parts.setdefault(et[2], []).append(self.edges[et][1, pos])
            for et, ei in edit.added.items():
                parts.setdefault(et[2], []).append(ei[1])
            dense = {}
            for et, (pos, weight) in weights.items():
                parts.setdefault(et[2], []).append(self.edges[et][1, pos])
                dense[et] = torch.ones(self.edges[et].size(1), dtype=weight.dtype).index_put(
                    (pos,), weight)
            touched.append({nt: torch.cat(p) for nt, p in parts.items()})
            full_weights.append(dense)
        overrides: list[dict[tuple[int, str], tuple[Tensor, Tensor]]] = [{} for _ in range(count)]

        for layer in range(1, self.num_layers + 1):
            layer_convs = (convs or self.module.convs)[layer - 1]
            for nt in base[layer]:
                if nt not in self.order:  # never updated: its states carry over
                    for b in range(count):
                        if (layer - 1, nt) in overrides[b]:
                            overrides[b][(layer, nt)] = overrides[b][(layer - 1, nt)]
                        if (layer - 1, nt) in changed[b]:
                            changed[b][(layer, nt)] = changed[b][(layer - 1, nt)]
            for dst in self.order:
                if (layer, dst) not in need:
                    continue
                wanted = need[(layer, dst)]
                recompute: list[Tensor | None] = []
                for b, edit in enumerate(edits):
                    dirty = [touched[b][dst]] if dst in touched[b] else []
                    if (layer - 1, dst) in changed[b]:
                        dirty.append(changed[b][(layer - 1, dst)])  # attention reads the target
                    for et in self.edges:
                        if et[2] == dst:
                            src_changed = changed[b].get((self.source_layer(et, layer), et[0]))
                            if src_changed is not None and src_changed.numel():
                                dirty.append(self._outgoing_targets(et, src_changed, edit))
                    nodes = torch.unique(torch.cat(dirty)) if dirty else None
                    if nodes is not None and wanted is not None:
                        nodes = nodes[torch.isin(nodes, wanted)]
                    recompute.append(nodes if nodes is not None and nodes.numel() else None)
                active = [b for b in range(count) if recompute[b] is not None]
                if not active:
                    continue
                total = None
                for et in self.edges:
                    if et[2] != dst:
                        continue
                    src_layer = self.source_layer(et, layer)
                    x_src, x_dst, index, masks = [], [], [], []
                    src_offset = dst_offset = 0
                    for b in active:
                        nodes = recompute[b]
                        ei, pos = self.incoming_with_positions(et, nodes, edits[b])
                        src, inverse = torch.unique(ei[0], return_inverse=True)
                        x_src.append(_patched_rows(base[src_layer][et[0]],
                                                   overrides[b].get((src_layer, et[0])), src))
                        x_dst.append(_patched_rows(base[layer - 1][dst],
                                                   overrides[b].get((layer - 1, dst)), nodes))
                        index.append(torch.stack([inverse.view(-1) + src_offset,
                                                  torch.searchsorted(nodes, ei[1]) + dst_offset]))
                        if full_weights[b]:
                            masks.append(full_weights[b][et][pos] if et in full_weights[b]
                                         else torch.ones(pos.numel()))
                        src_offset += src.numel()
                        dst_offset += nodes.numel()
                    local = torch.cat(index, dim=1)
                    conv = layer_convs["__".join(et)]
                    weighted = any(et in full_weights[b] for b in active)
                    if weighted:
                        set_masks(conv, torch.cat(masks), local, apply_sigmoid=False)
                    try:
                        h = conv((torch.cat(x_src), torch.cat(x_dst)), local)
                    finally:
                        if weighted:
                            clear_masks(conv)
                    total = h if total is None else total + h
                if total is None:
                    continue
                start = 0
                for b in active:
                    nodes = recompute[b]
                    overrides[b][(layer, dst)] = (nodes, total[start:start + nodes.numel()].float())
                    changed[b][(layer, dst)] = nodes
                    start += nodes.numel()
        return overrides

    @torch.no_grad()
    def scores_many(self, user: int, items: Iterable[int], edits: list[GraphEdit]) -> np.ndarray:
        """Scores ``[len(edits), len(items)]`` of ``items`` for ``user`` under each edit,
        evaluated together (much faster than one :meth:`scores` call per edit)."""
        users_t = torch.tensor([int(user)])
        items_t = torch.as_tensor(np.asarray(list(items), dtype=np.int64))
        out = np.empty((len(edits), len(items_t)), dtype=np.float32)
        if not self.exact_incremental:
            for b, edit in enumerate(edits):
                out[b] = self.scores(user, items_t.tolist(), edit)
            return out
        added: dict[EdgeType, list[Tensor]] = {}
        for edit in edits:
            for et, ei in edit.added.items():
                added.setdefault(et, []).append(ei)
        need = self.needed(users_t, items_t, {et: torch.cat(p, 1) for et, p in added.items()})
        groups: dict[tuple, list[int]] = {}
        for b, edit in enumerate(edits):
            key = tuple((i, v.numpy().tobytes()) for i, v in sorted(edit.item_text.items()))
            groups.setdefault(key, []).append(b)
        for members in groups.values():
            text = edits[members[0]].item_text
            base = self._text_variant(text, users_t, items_t, need)
            graph_edits = [GraphEdit(edits[b].removed, edits[b].added) for b in members]
            overrides = self._overrides(base, graph_edits, need)
            item_extra = self.item_extras(text)[items_t]
            for b, patch in zip(members, overrides, strict=True):
                user_emb = torch.stack([
                    _patched_rows(base[layer]["user"], patch.get((layer, "user")), users_t)
                    for layer in range(1, self.num_layers + 1)]).mean(0)
                item_emb = torch.stack([
                    _patched_rows(base[layer]["item"], patch.get((layer, "item")), items_t)
                    for layer in range(self.num_layers + 1)]).mean(0)
                user_emb = torch.cat([user_emb, self.user_extra[users_t]], 1)
                item_emb = torch.cat([item_emb, item_extra], 1)
                out[b] = (user_emb @ item_emb.T).numpy()[0]
        return out

    # ------------------------------------------------------------------ explainers
    def explainable_convs(self) -> torch.nn.ModuleList:
        """A private copy of the layers as PyG message-passing convolutions (same weights),
        so that PyG's explain masks and message hooks apply; the flagship's sparse GAT
        becomes :class:`torch_geometric.nn.GATConv`. Checked to give the same outputs."""
        layers = torch.nn.ModuleList()
        for layer, convs in enumerate(self.module.convs):
            converted = torch.nn.ModuleDict()
            for key, conv in convs.items():
                twin = _message_passing_twin(conv)
                et = tuple(key.split("__"))
                ei = self.edges[et][:, :256]
                args = ((self.layers[layer][et[0]], self.layers[layer][et[2]]), ei)
                with torch.no_grad():
                    if not torch.allclose(conv(*args), twin(*args), atol=1e-4, rtol=1e-4):
                        raise RuntimeError(f"Cannot mirror the {type(conv).__name__} of relation "
                                           f"{key} as a message-passing layer.")
                converted[key] = twin
            layers.append(converted)
        return layers

    def pair_layers(self, users: Tensor, items: Tensor,
                    edge_weights: dict[EdgeType, tuple[Tensor, Tensor]],
                    convs: torch.nn.ModuleList) -> list[dict[str, Tensor]]:
        """Layer states exact for the targets with soft edge weights (differentiable)."""
        need = self.needed(users, items)
        return self._incremental(self.layers, GraphEdit(), need, {}, edge_weights, convs)

    def pool_targets(self, layers: list[dict[str, Tensor]], users: Tensor,
                     items: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled final embeddings of the targets from :meth:`layer_states`-like states."""
        user_emb = torch.stack([layers[layer]["user"][users]
                                for layer in range(1, self.num_layers + 1)]).mean(0)
        item_emb = torch.stack([layers[layer]["item"][items]
                                for layer in range(self.num_layers + 1)]).mean(0)
        return user_emb, item_emb


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
