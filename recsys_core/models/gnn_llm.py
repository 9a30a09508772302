"""The flagship recommender: heterogeneous graph attention over language-model item features.

Items start from a frozen sentence-encoder embedding of their text (projected to ``d``) plus a
learnable id embedding for items seen in training; attribute nodes (genre, category, tag ...)
have learnable embeddings; users start from a shared learnable vector plus a learnable id
embedding (and user features), and attention over the items in their history adds the rest.
One graph-attention convolution per relation and layer
(:class:`~recsys_core.models.sparse_attention.SparseGATConv`, the maths of PyG's ``GATConv``
on sparse kernels) runs over the graph of :func:`recsys_core.graph.build_hetero_graph`;
final embeddings average the layers (as in LightGCN) and the graph score is their dot
product. A full-rank item-item path over the same user-item graph (closed-form EASE
weights, :mod:`recsys_core.models.item_item`) is added to it, with its regularisation and
weight chosen on the validation split (off where it does not help): a rank-``d`` dot product
alone cannot express every co-occurrence pattern of a dense catalogue.

Because a user's representation reads their history (and the item-item term sums over the
user's ``rates`` edges), editing the graph (removing or adding a user's edges) changes that
user's scores without retraining: :meth:`GNNLLMRecommender.score_with_graph` rescores an
edited :class:`~torch_geometric.data.HeteroData`, and :meth:`GNNLLMRecommender.attention`
returns the attention weights of every edge, layer, head and relation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Unpack

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from .. import distributed
from ..dataset import DEFAULT_TEXT_TEMPLATE, ITEM_IDX, USER_IDX, Dataset
from ..device import pick_device
from ..graph import (
    FOLLOWED_BY,
    FOLLOWS,
    RATED_BY,
    RATES,
    SIMILAR,
    attribute_edge_types,
    build_hetero_graph,
    text_knn_edges,
)
from ..sampling import SamplingPlan
from ..training import TrainOptions, TrainResult, unique_pairs
from .base import ProgressCallback, interaction_matrix
from .convs import ATTENTION_CONVS, CONVS, BipartiteGCNConv, make_conv
from .embedding import EmbeddingRecommender, dot_scores
from .graph_filter import (
    DEFAULT_ATTRIBUTE_WEIGHTS,
    DEFAULT_FILTER_WEIGHTS,
    DEFAULT_SMOOTHINGS,
    GraphFilterBasis,
    GraphFilterChoice,
    item_attribute_matrix,
    select_graph_filter,
)
from .item_item import (
    DEFAULT_MARGIN,
    DEFAULT_REG_LAMBDAS,
    DEFAULT_RELATIVE_WEIGHTS,
    ItemItemChoice,
    ItemItemPath,
    ValidationRanking,
    covered_items,
    ease_weights,
    select_item_item,
    spread_ratio,
)
from .popularity_prior import (
    PopularityPriorChoice,
    item_popularity,
    popularity_values,
    prior_scale,
    prior_term,
    select_popularity_prior,
)
from .sparse_attention import SortedEdges, SparseGATConv, segment_softmax
from .stages import EdgeType, Stage, StageProgram

ITEM_ITEM_PREFIX = "item_item."


def user_feature_matrix(dataset: Dataset, max_categories: int = 32) -> Tensor | None:
    """``[num_users, f]`` features from ``dataset.users``: numeric columns standardised,
    others one-hot over their ``max_categories`` most frequent values; users without a row, and
    missing values, are zeros. ``None`` when there are no user feature columns."""
    users = dataset.users
    if users is None or not len(users):
        return None
    columns = [c for c in users.columns if c != "user_id"]
    if not columns:
        return None
    rows = dataset.user_idx(users["user_id"].astype(str))
    blocks = []
    for column in columns:
        values = users[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            v = values.to_numpy(np.float64)
            std = np.nanstd(v)
            if np.isfinite(v).any():
                v = np.nan_to_num((v - np.nanmean(v)) / (std if std > 0 else 1.0))
            else:
                v = np.zeros(len(v))
            blocks.append(v[:, None])
        else:
            text = values.astype("string")
            top = text.value_counts().index[:max_categories]
            codes = pd.Categorical(text, categories=top).codes
            onehot = np.zeros((len(values), len(top)))
            onehot[np.flatnonzero(codes >= 0), codes[codes >= 0]] = 1.0
            blocks.append(onehot)
    features = np.zeros((dataset.num_users, sum(b.shape[1] for b in blocks)), dtype=np.float32)
    features[rows] = np.concatenate(blocks, axis=1)
    return torch.from_numpy(features)


def relation_group(edge_type: EdgeType) -> str | None:
    """The side-information group of a relation: the attribute node type it joins
    (``"genre"``, ``"user_age"`` ...), ``"user_edges"`` (user-user) or ``"similar_items"``
    (text similarity); ``None`` for the user-item interactions themselves."""
    src, _, dst = edge_type
    if src == "user" and dst == "user":
        return "user_edges"
    if src == "item" and dst == "item":
        return "similar_items"
    for end in (src, dst):
        if end not in ("user", "item"):
            return end
    return None


def edge_key(edge_type: EdgeType) -> str:
    """Module-dict key of an edge type (``"user__rates__item"``)."""
    return "__".join(edge_type)


def _rows(tensor: Tensor, n: int | None) -> Tensor:
    """The first ``n`` rows of ``tensor``; ``None``: the tensor itself (a full pass)."""
    return tensor if n is None else tensor[:n]


class GNNLLMModule(nn.Module):
    r"""Heterogeneous graph network over users, items and attribute nodes.

    Layer-0 features: items :math:`\mathbf{W}_t \mathbf{t}_i + g_i \mathbf{e}_i` (frozen text
    embedding :math:`\mathbf{t}_i` projected by a linear layer, plus an id embedding gated by
    :math:`g_i = 1` for items with training interactions and dropped at random during
    training); attribute nodes :math:`\mathbf{a}_v` (learnable); users a shared learnable
    vector :math:`\mathbf{u}_0`, plus projected user features and an id embedding (optional).
    Each layer runs one convolution per relation in stages (see :meth:`stage_program`):
    users from their items, users from users, items from users, attributes and similar
    items, attributes from items. Final embeddings are the mean over layers 0..L; with
    ``item_bias`` a last column carries an item bias (users hold 1 there), plus the
    popularity prior ``item_prior`` when validation chose one (0 otherwise; see
    :mod:`recsys_core.models.popularity_prior`).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        item_text (Tensor): ``[num_items, t]`` frozen text embeddings.
        node_counts (dict): Node count of each attribute node type.
        edge_types (list): Edge types the model has convolutions for.
        static_edges (dict): Edge type -> ``[2, E]`` edges that do not come from interactions
            (attributes, user-user, text similarity).
        embedding_dim (int): Size ``d`` of every representation. (default: :obj:`64`)
        num_layers (int): Message-passing layers. (default: :obj:`1`)
        conv (str): ``"gat"`` (:class:`SparseGATConv`), ``"gatv2"`` (PyG ``GATv2Conv``),
            ``"gcn"``, ``"sage"`` or ``"gin"``. (default: :obj:`"gat"`)
        heads (int): Attention heads; ``d`` must be divisible by it. (default: :obj:`2`)
        attention_dropout (float): Dropout on attention coefficients. (default: :obj:`0.0`)
        edge_dropout (float): Share of user-item edges dropped in each training pass.
            (default: :obj:`0.3`)
        id_dropout (float): Probability that an item's id embedding is dropped in a training
            pass, so the text path learns to stand in for it (cold items). (default: :obj:`0.1`)
        user_id_embedding (bool): Add a learnable per-user vector to the users' layer-0
            features, beside the history the attention reads. (default: :obj:`True`)
        item_bias (bool): Learn an item bias from text plus an id term. (default: :obj:`True`)
        user_features (Tensor, optional): ``[num_users, f]`` user features
            (see :func:`user_feature_matrix`). (default: :obj:`None`)
        relation_dropout (float): Probability that each side-information group (see
            :func:`relation_group`: one attribute node type, user-user edges, text-similarity
            edges) is left out of a training pass as a whole, so the network also works
            without it and validation can switch it off (:meth:`set_group_active`).
            (default: :obj:`0.0`)
        historical_embeddings (bool): In mini-batch training, compute the user stages for
            the batch's own users only; the stages after them read the other users of the
            subgraph (the raters of the batch's items, the friends of its users) from
            historical embeddings: each user's state as it was last computed in a batch (its
            layer-0 features before that), with no gradient (GNNAutoScale, Fey et al., ICML
            2021). The sample then stops at those users (6-16% less CPU per epoch at 1-10M
            interactions in ``benchmarks/bench_scale.py``, not linear yet), at the price of
            states up to an epoch old. Full-graph passes,
            validation and scoring never read them. (default: :obj:`False`)
    """

    generator: torch.Generator | None = None  # the job's, in training (rng.attach_generator)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_text: Tensor,
        node_counts: dict[str, int],
        edge_types: list[EdgeType],
        static_edges: dict[EdgeType, Tensor],
        embedding_dim: int = 64,
        num_layers: int = 1,
        conv: str = "gat",
        heads: int = 2,
        attention_dropout: float = 0.0,
        edge_dropout: float = 0.3,
        id_dropout: float = 0.1,
        user_id_embedding: bool = True,
        item_bias: bool = True,
        user_features: Tensor | None = None,
        relation_dropout: float = 0.0,
        historical_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, got {conv!r}.")
        if conv in ATTENTION_CONVS and embedding_dim % heads:
            raise ValueError(f"embedding_dim ({embedding_dim}) must be divisible by heads "
                             f"({heads}).")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}.")
        self.num_users, self.num_items = num_users, num_items
        self.embedding_dim, self.num_layers, self.conv = embedding_dim, num_layers, conv
        self.heads = heads if conv in ATTENTION_CONVS else 1
        self.edge_dropout, self.id_dropout = edge_dropout, id_dropout
        self.all_edge_types = [tuple(et) for et in edge_types]
        if not 0 <= relation_dropout < 1:
            raise ValueError(f"relation_dropout must be in [0, 1), got {relation_dropout}.")
        self.relation_dropout = float(relation_dropout)
        self.historical_embeddings = bool(historical_embeddings)
        # Stage index -> (states [num_users, d], filled [num_users]) of the user stages, kept
        # between mini-batch steps when historical_embeddings is on (see _historical_rows).
        self._user_history: dict[int, tuple[Tensor, Tensor]] = {}
        self.groups = sorted({g for et in self.all_edge_types
                              if (g := relation_group(et)) is not None})
        # Which side-information groups take part (1) or were switched off on validation (0);
        # a buffer, so a saved run restores the same graph.
        self.register_buffer("group_active", torch.ones(len(self.groups), dtype=torch.uint8))
        # (target node type, sources of the same type?) in update order; see stage_program().
        self.schedule = [("user", False), ("user", True), ("item", False), ("item", True)]
        self.schedule += [(nt, False) for nt in sorted(node_counts)]
        self.register_buffer("item_text", item_text.float().contiguous())
        self.text_proj = nn.Linear(item_text.size(1), embedding_dim)
        self.item_id = nn.Embedding(num_items, embedding_dim)
        self.user_token = nn.Parameter(torch.empty(1, embedding_dim))
        self.user_id = nn.Embedding(num_users, embedding_dim) if user_id_embedding else None
        self.user_feature_proj = None
        if user_features is not None and user_features.size(1):
            self.register_buffer("user_features", user_features.float(), persistent=False)
            self.user_feature_proj = nn.Linear(user_features.size(1), embedding_dim)
        # Item bias (popularity) from text plus an id term, carried as an extra embedding column.
        self.bias_text = nn.Linear(item_text.size(1), 1) if item_bias else None
        self.bias_id = nn.Embedding(num_items, 1) if item_bias else None
        # A popularity prior added to that bias: set after training when validation chooses
        # it (recsys_core.models.popularity_prior), 0 otherwise; saved with the run.
        if item_bias:
            self.register_buffer("item_prior", torch.zeros(num_items))
        else:
            self.item_prior = None
        self.attributes = nn.ModuleDict({nt: nn.Embedding(max(n, 1), embedding_dim)
                                         for nt, n in node_counts.items()})
        self.node_counts = dict(node_counts)
        self.convs = nn.ModuleList(
            nn.ModuleDict({edge_key(et): make_conv(conv, embedding_dim, heads, attention_dropout)
                           for et in self.all_edge_types})
            for _ in range(num_layers))
        self._static: dict[EdgeType, Tensor] = {}
        for et, ei in static_edges.items():
            self.register_buffer(f"static__{edge_key(et)}", ei.long(), persistent=False)
            self._static[tuple(et)] = f"static__{edge_key(et)}"
        self.register_buffer("users", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("items", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("item_warm", torch.zeros(num_items), persistent=False)
        self.reset_parameters()

    def attach_text_encoder(self, encoder: Any, texts: list[str], chunk: int = 128) -> None:
        """Fine-tune ``encoder`` (a :class:`recsys_core.text.TextEncoder` whose top layers were
        unfrozen) jointly: every forward pass re-embeds ``texts`` with gradients."""
        self._encoder, self._texts, self._text_chunk = encoder, list(texts), chunk
        self.text_model = encoder.model  # a submodule: optimised, moved and checkpointed

    def detach_text_encoder(self) -> None:
        """Freeze the fine-tuned text embeddings into ``item_text`` and drop the encoder."""
        if getattr(self, "text_model", None) is None:
            return
        with torch.no_grad():
            self.item_text = self.text_features().detach().float()
        del self.text_model
        self._encoder = self._texts = None

    def text_features(self, items: Tensor | None = None) -> Tensor:
        """``[num_items, t]`` text embeddings (``[len(items), t]`` of the given items): the
        frozen buffer, or the encoder's output."""
        if getattr(self, "text_model", None) is None:
            return self.item_text if items is None else self.item_text.index_select(0, items)
        self._encoder.device = self.item_text.device
        texts = self._texts if items is None else [self._texts[i] for i in items.tolist()]
        parts = [self._encoder.encode_trainable(texts[i:i + self._text_chunk])
                 for i in range(0, len(texts), self._text_chunk)]
        return torch.cat(parts).float()

    def train(self, mode: bool = True) -> GNNLLMModule:
        super().train(mode)
        if getattr(self, "text_model", None) is not None:
            self.text_model.eval()  # the encoder's dropout stays off (deterministic features)
        return self

    def reset_parameters(self) -> None:
        self._user_history = {}
        self.text_proj.reset_parameters()
        nn.init.normal_(self.item_id.weight, std=0.1)
        nn.init.normal_(self.user_token, std=0.1)
        if self.user_id is not None:
            nn.init.normal_(self.user_id.weight, std=0.01)
        if self.user_feature_proj is not None:
            self.user_feature_proj.reset_parameters()
        if self.bias_text is not None:
            self.bias_text.reset_parameters()
            nn.init.zeros_(self.bias_id.weight)
        for emb in self.attributes.values():
            nn.init.normal_(emb.weight, std=0.1)
        for layer in self.convs:
            for conv in layer.values():
                conv.reset_parameters()

    def sparse_tables(self) -> list[nn.Embedding]:
        """The per-user and per-item tables a sampled pass reads only by row (see
        :func:`~recsys_core.training.make_optimizer`: mini-batch training may give them
        sparse gradients)."""
        return [t for t in (self.user_id, self.item_id, self.bias_id) if t is not None]

    # ---------------------------------------------------------------- graph
    @property
    def edge_types(self) -> list[EdgeType]:
        """The relations in use: every relation the network has, less the side-information
        groups switched off (:meth:`set_group_active`)."""
        off = {g for g, on in zip(self.groups, self.group_active.tolist(), strict=True)
               if not on}
        if not off:
            return self.all_edge_types
        return [et for et in self.all_edge_types if relation_group(et) not in off]

    def active_groups(self) -> list[str]:
        """Side-information groups in use, sorted."""
        return [g for g, on in zip(self.groups, self.group_active.tolist(), strict=True) if on]

    def set_group_active(self, group: str, active: bool) -> None:
        """Switch a side-information group (see :func:`relation_group`) on or off."""
        if group not in self.groups:
            raise KeyError(f"No relation group {group!r}; the network has {self.groups}.")
        self.group_active[self.groups.index(group)] = int(bool(active))

    def _drop_groups(self, edges: dict[EdgeType, Tensor]) -> dict[EdgeType, Tensor]:
        """Training: leave each active group out of this pass with ``relation_dropout``."""
        groups = self.active_groups()
        if not (self.training and self.relation_dropout > 0 and groups):
            return edges
        draws = torch.rand(len(groups), generator=self.generator).tolist()
        dropped = {g for g, u in zip(groups, draws, strict=True) if u < self.relation_dropout}
        return {et: ei for et, ei in edges.items() if relation_group(et) not in dropped}

    def set_interactions(self, users: Tensor, items: Tensor) -> None:
        """Use these pairs as ``rates`` / ``rated_by`` edges; items among them are warm."""
        device = self.item_text.device
        self.users, self.items = users.long().to(device), items.long().to(device)
        warm = torch.zeros(self.num_items, device=device)
        warm[self.items] = 1.0
        self.item_warm = warm

    def edge_index_dict(self, hidden: Tensor | None = None) -> dict[EdgeType, Tensor]:
        """The graph of the current interactions; ``hidden`` pairs and (in training) a random
        ``edge_dropout`` share of the pairs are left out."""
        users, items = self.users, self.items
        if hidden is not None or (self.training and self.edge_dropout > 0):
            keep = torch.ones(users.numel(), dtype=torch.bool, device=users.device)
            if self.training and self.edge_dropout > 0:
                keep = torch.rand(users.numel(), device=users.device,
                                  generator=self.generator) >= self.edge_dropout
            if hidden is not None:
                keep[hidden] = False
            users, items = users[keep], items[keep]
        edges = {et: getattr(self, name) for et, name in self._static.items()}
        if RATES in self.edge_types:
            edges[RATES] = torch.stack([users, items])
        if RATED_BY in self.edge_types:
            edges[RATED_BY] = torch.stack([items, users])
        return self._drop_groups({et: edges[et] for et in self.edge_types if et in edges})

    # ---------------------------------------------------------------- propagation
    def id_gate(self, items: Tensor | None = None) -> Tensor:
        """``[num_items, 1]`` (``[len(items), 1]`` of the given items): 1 where an item's id
        embedding is used (warm, not dropped)."""
        gate = self.item_warm if items is None else self.item_warm.index_select(0, items)
        if self.training and self.id_dropout > 0:
            gate = gate * (torch.rand(gate.shape, device=gate.device,
                                      generator=self.generator) >= self.id_dropout)
        return gate.unsqueeze(1)

    def input_features(self, gate: Tensor, text: Tensor,
                       nodes: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Layer-0 features of every node type (``gate`` from :meth:`id_gate`).

        Args:
            gate (Tensor): ``[num_items, 1]`` id gates (of ``nodes["item"]`` when given).
            text (Tensor): Text embeddings (of ``nodes["item"]`` when given).
            nodes (dict, optional): Node type -> global ids: features of those nodes only,
                in that order (a sampled subgraph). (default: every node)
        """
        if nodes is None:
            x = {"item": self.text_proj(text) + gate * self.item_id.weight}
            user = self.user_token.expand(self.num_users, -1)
            if self.user_id is not None:
                user = user + self.user_id.weight
            if self.user_feature_proj is not None:
                user = user + self.user_feature_proj(self.user_features)
            x["user"] = user
            for nt, emb in self.attributes.items():
                x[nt] = emb.weight[:self.node_counts[nt]]
            return x
        items, users = nodes["item"], nodes["user"]
        x = {"item": self.text_proj(text) + gate * self.item_id(items)}
        user = self.user_token.expand(users.numel(), -1)
        if self.user_id is not None:
            user = user + self.user_id(users)
        if self.user_feature_proj is not None:
            user = user + self.user_feature_proj(self.user_features.index_select(0, users))
        x["user"] = user
        for nt, emb in self.attributes.items():
            x[nt] = emb(nodes[nt]) if nt in nodes else emb.weight[:0]
        return x

    def stage_program(self, edge_types: list[EdgeType]) -> StageProgram:
        """The forward pass over a graph with ``edge_types`` as a program of stages.

        Each layer follows :attr:`schedule`. A stage ``(dst, same_type)`` sums the
        convolutions of the relations into ``dst`` whose sources are (``same_type``) or are
        not of type ``dst``, each reading its sources' freshest states. A stage from other
        types reads the targets' state at the start of the layer and replaces it; a stage from
        the same type reads the freshest target state and, after an earlier update of ``dst``
        in the layer, adds to it. Stages without relations are left out.

        This is the one description of the propagation: :meth:`propagate`,
        :meth:`receptive_field` and the explanation engine
        (:class:`~recsys_core.explain.engine.FlagshipEngine`) all run it, so a subclass may
        override it (with :meth:`run_stage`) and everything follows.

        Args:
            edge_types (list): The relations present, in the order their outputs are summed.
        """
        edge_types = [tuple(et) for et in edge_types]
        stages: list[Stage] = []
        layer_end = [0]
        for layer in range(1, self.num_layers + 1):
            updated: set[str] = set()
            for dst, same_type in self.schedule:
                relations = tuple(et for et in edge_types
                                  if et[2] == dst and (et[0] == dst) == same_type)
                if not relations:
                    continue
                target = len(stages) if same_type else layer_end[-1]
                stages.append(Stage(layer, dst, relations, target, same_type and dst in updated))
                updated.add(dst)
            layer_end.append(len(stages))
        return StageProgram(stages, layer_end)

    def run_stage(
        self,
        stage: Stage,
        sources: dict[str, Tensor],
        target_state: Tensor,
        edge_index_dict: dict[EdgeType, Tensor],
        convs: nn.ModuleDict | None = None,
        sorted_edges: dict[EdgeType, SortedEdges] | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, dict[EdgeType, tuple[Tensor, Tensor]]]:
        """The state of the ``stage.dst`` nodes after one stage.

        Args:
            stage (Stage): A stage of :meth:`stage_program`.
            sources (dict): Node type -> ``[N, d]`` source states (the snapshot before the
                stage); only the types of ``stage.relations``' sources are read.
            target_state (Tensor): ``[N_dst, d]`` states of the targets (snapshot
                ``stage.target``).
            edge_index_dict (dict): Edge type -> ``[2, E]`` edges of each of the stage's
                relations, indexing ``sources`` and ``target_state`` (any subset of nodes
                whose incoming edges are all there gets exact outputs).
            convs (ModuleDict, optional): Convolutions to use instead of layer
                ``stage.layer``'s own (e.g. message-passing twins). (default: :obj:`None`)
            sorted_edges (dict, optional): Precomputed sorted edges of the relations for
                the sparse GAT. (default: :obj:`None`)
            return_attention (bool): Also return ``edge type -> (edge_index [2, E],
                alpha [E, heads])`` (attention convolutions only). (default: :obj:`False`)
        """
        convs = self.convs[stage.layer - 1] if convs is None else convs
        sorted_edges = sorted_edges or {}
        attention: dict[EdgeType, tuple[Tensor, Tensor]] = {}
        out = None
        for et in stage.relations:
            conv = convs[edge_key(et)]
            pair = (sources[et[0]], target_state)
            extra = {"edges": sorted_edges[et]} if et in sorted_edges else {}
            if return_attention:
                h, (ei, alpha) = conv(pair, edge_index_dict[et], return_attention_weights=True,
                                      **extra)
                attention[et] = (ei, alpha)
            else:
                h = conv(pair, edge_index_dict[et], **extra)
            out = h if out is None else out + h
        if stage.accumulate:
            out = target_state + out
        return (out, attention) if return_attention else out

    @staticmethod
    def readout(layers: list[Tensor]) -> Tensor:
        """Final graph embeddings from the states at the end of each layer (layer 0: the
        inputs): their mean, as in LightGCN."""
        return torch.stack(layers).mean(0)

    def propagate(
        self,
        edge_index_dict: dict[EdgeType, Tensor],
        return_attention: bool = False,
        nodes: dict[str, Tensor] | None = None,
        num_seeds: dict[str, int] | None = None,
    ) -> tuple[Tensor, Tensor, dict[tuple[int, EdgeType], tuple[Tensor, Tensor]]]:
        """Run the :meth:`stage_program` of ``edge_index_dict``'s relations.

        Args:
            edge_index_dict (dict): Edge type -> ``[2, E]`` edges (indices into ``nodes``
                when given).
            return_attention (bool): Also return attention weights. (default: :obj:`False`)
            nodes (dict, optional): Node type -> global ids of a sampled subgraph (see
                :class:`~recsys_core.sampling.NeighborSampler`): the pass runs on those nodes
                only and returns their rows, in that order. (default: every node)
            num_seeds (dict, optional): ``{"user": n_u, "item": n_i}``: return only the first
                ``n_u`` user and ``n_i`` item rows, and run each stage only for the rows
                that later stages or the readout read (:meth:`stage_rows`), a prefix of its
                targets, skipping stages nobody reads (a mini-batch's outer nodes). The rows
                returned are those of the whole pass. Ignored for ``"gcn"``, whose
                normalisation counts the sources' edges. (default: every row)

        Returns:
            ``(user_emb [num_users, d], item_emb [num_items, d], attention)`` where
            ``attention[(layer, edge_type)] = (edge_index [2, E], alpha [E, heads])`` when
            ``return_attention`` (GAT and GATv2 only), else empty.
        """
        unknown = [et for et in edge_index_dict if tuple(et) not in self.edge_types]
        if unknown:
            raise ValueError(f"The model has no convolution for edge type(s) {unknown}; it was "
                             f"trained with {self.edge_types}.")
        edge_index_dict = {tuple(et): ei for et, ei in edge_index_dict.items()}
        items = None if nodes is None else nodes["item"]
        gate = self.id_gate(items)
        text = self.text_features(items)
        x = self.input_features(gate, text, nodes)
        attention: dict[tuple[int, EdgeType], tuple[Tensor, Tensor]] = {}
        want_attention = return_attention and self.conv in ATTENTION_CONVS
        sizes = {nt: v.size(0) for nt, v in x.items()}
        program = self.stage_program(list(edge_index_dict))
        historical = (self.historical_embeddings and self.training and nodes is not None
                      and num_seeds is not None and self.conv != "gcn")
        if num_seeds is not None and self.conv != "gcn":
            # Only the rows later stages and the readout read; sorted edges per stage, over
            # its restricted edges.
            plan = self.stage_rows(program, edge_index_dict, num_seeds, sizes,
                                   {"user": num_seeds["user"]} if historical else None)
            sorted_edges = None
        else:  # every row of every stage (None: no slicing)
            plan = [(None, edge_index_dict, dict.fromkeys(sizes)) for _ in program.stages]
            sorted_edges = ({et: SortedEdges.build(ei, sizes[et[0]], sizes[et[2]])
                             for et, ei in edge_index_dict.items()} if self.conv == "gat"
                            else {})
        snapshots = [x]  # every node type's state after each stage (shared references)
        for stage, (n, edges, rows) in zip(program.stages, plan, strict=True):
            if n == 0:  # no later stage and no readout row reads these targets
                snapshots.append({**snapshots[-1], stage.dst: snapshots[-1][stage.dst][:0]})
                continue
            stage_sorted = sorted_edges if sorted_edges is not None else (
                {et: SortedEdges.build(ei, rows[et[0]], n) for et, ei in edges.items()}
                if self.conv == "gat" else {})
            out = self.run_stage(stage, {nt: _rows(snapshots[-1][nt], r)
                                         for nt, r in rows.items()},
                                 _rows(snapshots[stage.target][stage.dst], n), edges,
                                 sorted_edges=stage_sorted, return_attention=want_attention)
            if want_attention:
                out, alphas = out
                attention.update({(stage.layer - 1, et): a for et, a in alphas.items()})
            if historical and stage.dst == "user":
                out = self._historical_rows(len(snapshots) - 1, out, nodes["user"], x["user"])
            snapshots.append({**snapshots[-1], stage.dst: out})
        # The readout of the seed rows (None: every row).
        n_user, n_item = (None, None) if num_seeds is None else (num_seeds["user"],
                                                                 num_seeds["item"])
        user_emb = self.readout([_rows(snapshots[p]["user"], n_user)
                                 for p in program.layer_end])
        item_emb = self.readout([_rows(snapshots[p]["item"], n_item)
                                 for p in program.layer_end])
        if self.bias_text is not None:  # the item-bias column (users hold 1 there)
            gate, text = _rows(gate, n_item), _rows(text, n_item)
            rows = None if items is None else _rows(items, n_item)
            bias = self.bias_text(text) + gate * (self.bias_id.weight if rows is None
                                                  else self.bias_id(rows))
            prior = self.item_prior if rows is None else self.item_prior.index_select(0, rows)
            bias = bias + prior.unsqueeze(1)
            user_emb = torch.cat([user_emb, user_emb.new_ones(user_emb.size(0), 1)], 1)
            item_emb = torch.cat([item_emb, bias], 1)
        return user_emb, item_emb, attention

    @torch.no_grad()
    def _record_history(self, stage_index: int, ids: Tensor,
                        states: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``states`` as the historical embeddings of users ``ids`` at this stage;
        returns the stage's ``(table, filled)`` pair."""
        entry = self._user_history.get(stage_index)
        if entry is None or entry[0].device != states.device:
            entry = (states.new_zeros(self.num_users, states.size(1), dtype=torch.float32),
                     torch.zeros(self.num_users, dtype=torch.bool, device=states.device))
            self._user_history[stage_index] = entry
        table, filled = entry
        table[ids] = states.detach().to(table.dtype)
        filled[ids] = True
        return entry

    def _historical_rows(self, stage_index: int, out: Tensor, users: Tensor,
                         inputs: Tensor) -> Tensor:
        """A user stage's output in historical mode: the ``n`` rows it computed (the batch's
        users), recorded, then every other user of the subgraph from its historical
        embedding, or its layer-0 features where it has none yet (constants: no gradient
        reaches them)."""
        n = out.size(0)
        table, filled = self._record_history(stage_index, users[:n], out)
        rest = users[n:]
        if rest.numel() == 0:
            return out
        stale = torch.where(filled[rest].unsqueeze(1), table[rest], inputs[n:].detach())
        return torch.cat([out, stale.to(out.dtype)])

    @staticmethod
    def stage_rows(program: StageProgram, edge_index_dict: dict[EdgeType, Tensor],
                   num_seeds: dict[str, int], sizes: dict[str, int],
                   computed: dict[str, int] | None = None,
                   ) -> list[tuple[int, dict, dict]]:
        """Which rows each stage must compute so that the first ``num_seeds`` user and item
        rows of the readout are exact.

        Walks the program backwards (as :meth:`receptive_field` does): a stage's targets
        need the rows that the readout and the later stages read of their type, a prefix
        ``[0, n)`` (the sampler numbers nodes in the order they joined, so the nodes read
        late come first); its edges into rows past ``n`` are dropped, and its sources then
        need the rows up to its largest source. Each count only grows on the way back, so a
        stage computes every row any later stage reads. Exact for convolutions whose output
        at a target depends only on its own incoming edges (GAT, GATv2, SAGE, GIN).

        Args:
            program (StageProgram): The pass's stages.
            edge_index_dict (dict): Its edges (local indices of a sampled subgraph).
            num_seeds (dict): Readout rows wanted per node type.
            sizes (dict): Rows of each node type in the subgraph.
            computed (dict, optional): Node type -> rows its stages compute at most, whatever
                later stages read (historical embeddings stand in for the rest, see
                :meth:`_historical_rows`). (default: :obj:`None`)

        Returns:
            Per stage, ``(n, edges, sources)``: its target rows (0: skip the stage), its
            relations' edges restricted to those targets, and the rows it reads of each
            source type.
        """
        need = {nt: min(int(num_seeds.get(nt, 0)), size) for nt, size in sizes.items()}
        plan: list[tuple[int, dict, dict]] = [(0, {}, {})] * len(program.stages)
        for index in range(len(program.stages) - 1, -1, -1):
            stage = program.stages[index]
            n = need[stage.dst]
            if computed is not None and stage.dst in computed:
                n = min(n, int(computed[stage.dst]))
            if n == 0:
                continue
            edges: dict[EdgeType, Tensor] = {}
            sources: dict[str, int] = {}
            for et in stage.relations:
                ei = edge_index_dict[et]
                if ei.size(1) and int(ei[1].max()) >= n:
                    ei = ei[:, ei[1] < n]
                edges[et] = ei
                top = int(ei[0].max()) + 1 if ei.size(1) else 0
                sources[et[0]] = max(sources.get(et[0], 0), top)
                need[et[0]] = max(need[et[0]], top)
            plan[index] = (n, edges, sources)
        return plan

    def receptive_field(self, edge_index_dict: dict[EdgeType, Tensor], node_type: str,
                        index: int) -> dict[tuple[int, EdgeType], Tensor]:
        """Boolean mask per ``(layer, edge_type)``: the edges whose messages reach one node's
        final representation, following the :meth:`stage_program` backwards."""
        counts = {"user": self.num_users, "item": self.num_items, **self.node_counts}
        device = next(iter(edge_index_dict.values())).device if edge_index_dict else None
        relevant = {nt: torch.zeros(n, dtype=torch.bool, device=device)
                    for nt, n in counts.items()}
        relevant[node_type][index] = True
        edge_index_dict = {tuple(et): ei for et, ei in edge_index_dict.items()}
        masks = {}
        # A source read after its own update in this layer pulls in that update's edges:
        # walking the stages backwards handles it, since marking a source only affects the
        # stages still to visit, which are the earlier ones.
        for stage in reversed(self.stage_program(list(edge_index_dict)).stages):
            for et in stage.relations:
                ei = edge_index_dict[et]
                mask = relevant[stage.dst][ei[1]]
                masks[(stage.layer - 1, et)] = mask
                relevant[et[0]][ei[0][mask]] = True
        return masks

    def sampling_plan(self) -> SamplingPlan:
        """The graph and hop order for mini-batch training: the current interactions and
        static relations, expanded along the :meth:`stage_program` walked backwards (as
        :meth:`receptive_field` walks it), so a sampled subgraph holds what the seeds' final
        states read."""
        edges = {et: ei.cpu() for et, ei in self.edge_index_dict_all().items()}
        counts = {"user": self.num_users, "item": self.num_items, **self.node_counts}
        program = self.stage_program(list(edges))
        hops = [list(stage.relations) for stage in reversed(program.stages)]
        return SamplingPlan(edges, counts, hops,
                            tuple(et for et in (RATES, RATED_BY) if et in edges),
                            self.edge_dropout,
                            seeds_only=("user",) if self.historical_embeddings else ())

    def edge_index_dict_all(self) -> dict[EdgeType, Tensor]:
        """Every edge of the current graph (no dropout, nothing hidden)."""
        edges = {et: getattr(self, name) for et, name in self._static.items()}
        if RATES in self.edge_types:
            edges[RATES] = torch.stack([self.users, self.items])
        if RATED_BY in self.edge_types:
            edges[RATED_BY] = torch.stack([self.items, self.users])
        return {et: edges[et] for et in self.edge_types if et in edges}

    def forward(self, hidden: Tensor | None = None,
                sampled: HeteroData | None = None) -> tuple[Tensor, Tensor]:
        """``(user_emb, item_emb)`` over the current interactions (``hidden`` pairs left out),
        or, given a ``sampled`` mini-batch (:meth:`NeighborSampler.subgraph
        <recsys_core.sampling.NeighborSampler.subgraph>`), the rows of its seed users and
        items, computed on that subgraph only."""
        if sampled is not None:
            nodes = {nt: sampled[nt].n_id for nt in sampled.node_types}
            edges = {tuple(et): sampled[et].edge_index for et in sampled.edge_types}
            seeds = {nt: int(sampled[nt].batch_size) for nt in ("user", "item")}
            user_emb, item_emb, _ = self.propagate(edges, nodes=nodes, num_seeds=seeds)
            return user_emb[:seeds["user"]], item_emb[:seeds["item"]]
        user_emb, item_emb, _ = self.propagate(self.edge_index_dict(hidden))
        return user_emb, item_emb


class GNNLLMRecommender(EmbeddingRecommender):
    r"""Graph attention over language-model item features ("gnn-llm").

    See :class:`GNNLLMModule` for the network. Items are embedded once by a frozen sentence
    encoder (:func:`recsys_core.text.encode_items`) unless embeddings are given; training uses
    a sampled softmax with the batch's target edges hidden from message passing, and early
    stopping on validation NDCG@K.

    Args:
        embedding_dim (int): Representation size. (default: :obj:`128`)
        num_layers (int): Message-passing layers; one already reaches friends and raters'
            profiles (see :meth:`GNNLLMModule.propagate`). (default: :obj:`1`)
        conv (str): ``"gat"``, ``"gatv2"``, ``"gcn"``, ``"sage"`` or ``"gin"``.
            (default: :obj:`"gat"`)
        heads (int): Attention heads. (default: :obj:`2`)
        attention_dropout (float): Dropout on attention coefficients. (default: :obj:`0.0`)
        edge_dropout (float): Share of user-item edges dropped per training pass.
            (default: :obj:`0.3`)
        id_dropout (float): Chance an item's id embedding is dropped per training pass.
            (default: :obj:`0.1`)
        user_id_embedding (bool): Add a per-user learnable vector to the user's layer-0
            features, beside the history the attention reads: on ml-100k's three validation
            splits it lifted the flagship's validation NDCG@20 by 2.1% on average (on the demo
            data it neither gained nor lost); ``False`` makes users their history, features
            and friends alone. (default: :obj:`True`)
        item_bias (bool): Learn an item bias (text + id), carried as the last embedding column.
            (default: :obj:`True`)
        popularity_prior (bool): Add to that bias a popularity prior (a transform of each
            item's number of training users, :mod:`recsys_core.models.popularity_prior`),
            its transform and weight chosen on the validation split before the graph filter
            (off where it does not clear the margin; needs ``item_bias``).
            (default: :obj:`True`)
        use_user_features (bool): Use the columns of ``dataset.users`` as user features
            and as user attribute nodes (``user_age`` ...), whose messages reach users in
            the same stage as their items'. (default: :obj:`True`)
        use_attributes (bool): Include attribute nodes (genre, category ...).
            (default: :obj:`True`)
        use_user_edges (bool): Include user-user edges when the data has them.
            (default: :obj:`True`)
        text_knn_k (int): Text-similarity neighbours per item as ``similar_to`` edges; 0 adds
            none. (default: :obj:`0`)
        template (str): Item text template. (default: :obj:`DEFAULT_TEXT_TEMPLATE`)
        finetune_text_layers (int): Top transformer layers of the text encoder to fine-tune
            jointly (0 keeps it frozen; meant for a GPU). (default: :obj:`0`)
        item_text_embeddings (Tensor, optional): Precomputed ``[num_items, t]`` text
            embeddings in item order (skips encoding). (default: :obj:`None`)
        encoder (recsys_core.text.TextEncoder, optional): Encoder for item texts.
            (default: the bundled all-MiniLM-L6-v2)
        use_text (bool): Initialise items from their text embeddings; ``False`` (an ablation)
            gives every item the same constant text input, so only ids, attributes and the
            graph describe items. (default: :obj:`True`)
        graph_filter (bool): Add the graph-filter layer
            (:mod:`recsys_core.models.graph_filter`: closed-form normalised propagation over
            the user-item graph: a linear part, smoothed or plain, plus an ideal low-pass
            band) to the learned score, its settings and weight chosen on the validation split
            (off where it does not clear the margin). (default: :obj:`True`)
        graph_filter_dim (int, optional): Fix its ideal low-pass rank ``k`` (with
            ``graph_filter_alpha``) instead of choosing it. (default: :obj:`None`)
        graph_filter_alpha (float, optional): Fix the ideal low-pass weight.
            (default: :obj:`None`)
        graph_filter_weight (float, optional): Fix its weight relative to the spread ratio.
            (default: :obj:`None`)
        graph_filter_attribute_weight (float, optional): Fix the weight :math:`\gamma` of the
            attribute nodes inside the graph filter (0: plain filter) instead of choosing it
            on validation; attribute nodes count only with ``use_attributes``.
            (default: :obj:`None`)
        graph_filter_smoothing (float, optional): Fix the smoothing :math:`\mu` of the
            filter's linear part (0: the plain GF-CF linear filter) instead of choosing it on
            validation. (default: :obj:`None`)
        selection_margin (float): Relative validation NDCG gain the popularity prior, the
            graph filter, the item-item path and the text bridge must each show to switch on.
            (default: :obj:`0.01`)
        relation_dropout (float): Probability that a side-information group of relations
            (one attribute node type, user-user edges, text-similarity edges) is left out of
            a training pass (see :class:`GNNLLMModule`). (default: :obj:`0.25`)
        relation_selection (bool): After training, switch off each side-information group
            whose removal does not lower validation NDCG@K (side information stays only where
            it pays); the choice is kept in the run. (default: :obj:`True`)
        historical_embeddings (bool): In mini-batch training, read the users outside each
            batch from historical embeddings instead of recomputing them from their own
            sampled items (:class:`GNNLLMModule`): a step's cost stops growing with the graph,
            at some accuracy (see README, Scale). Off by default; full-graph
            training ignores it. (default: :obj:`False`)
        item_item (bool): Add the full-rank item-item path
            (:mod:`recsys_core.models.item_item`) to the graph score, its regularisation and
            weight chosen on the validation split (weight 0 where it does not help).
            (default: :obj:`True`)
        item_item_lambda (float, optional): Fix its regularisation instead of choosing it.
            (default: :obj:`None`)
        item_item_weight (float, optional): Fix its weight (relative to the spread ratio of
            the two terms, see :func:`~recsys_core.models.item_item.spread_ratio`) instead of
            choosing it. (default: :obj:`None`)
        item_item_max_items (int): The path covers the items with the most interactions, at
            most this many (its dense weights take ``4 * n**2`` bytes, about ``20 * n**2``
            while fitting). (default: :obj:`5000`)
        item_item_bridge_k (int): Items outside the path (no interactions yet, or beyond
            ``item_item_max_items``) take the similarity-weighted mean of the path's columns
            of this many most text-similar covered items, times a factor chosen on
            validation; 0 leaves them out (term 0). (default: :obj:`20`)
        **train_options: Training settings (:class:`~recsys_core.training.TrainOptions`, each
            documented on :class:`~recsys_core.training.TrainConfig`). The flagship's defaults
            (:attr:`train_defaults`) differ in ``epochs`` (:obj:`300`), ``batch_size``
            (:obj:`8192`), ``lr`` (:obj:`1e-2`), ``loss`` (:obj:`"softmax"`),
            ``num_negatives`` (:obj:`2048`), ``hide_targets`` (:obj:`True`), ``patience``
            (:obj:`5` evaluations without a gain: on ml-100k the best epoch came within 3 of
            the previous best on every split seed, and at 10k items within 3 too, so 10 only
            cost time) and ``refit`` (:obj:`True`: after early stopping, retrain on all
            interactions, the carved validation split included, for the chosen epochs).
    """

    name = "gnn-llm"
    train_defaults: ClassVar[TrainOptions] = {
        "epochs": 300, "batch_size": 8192, "lr": 1e-2, "loss": "softmax",
        "num_negatives": 2048, "hide_targets": True, "patience": 5, "refit": True}

    def __init__(
        self,
        embedding_dim: int = 128,
        num_layers: int = 1,
        conv: str = "gat",
        heads: int = 2,
        attention_dropout: float = 0.0,
        edge_dropout: float = 0.3,
        id_dropout: float = 0.1,
        user_id_embedding: bool = True,
        item_bias: bool = True,
        popularity_prior: bool = True,
        use_user_features: bool = True,
        use_attributes: bool = True,
        use_user_edges: bool = True,
        text_knn_k: int = 0,
        template: str = DEFAULT_TEXT_TEMPLATE,
        finetune_text_layers: int = 0,
        item_text_embeddings: Tensor | np.ndarray | None = None,
        encoder: Any | None = None,
        item_item: bool = True,
        item_item_lambda: float | None = None,
        item_item_weight: float | None = None,
        item_item_max_items: int = 5000,
        item_item_bridge_k: int = 20,
        use_text: bool = True,
        graph_filter: bool = True,
        graph_filter_dim: int | None = None,
        graph_filter_alpha: float | None = None,
        graph_filter_weight: float | None = None,
        graph_filter_attribute_weight: float | None = None,
        graph_filter_smoothing: float | None = None,
        selection_margin: float = DEFAULT_MARGIN,
        relation_dropout: float = 0.25,
        relation_selection: bool = True,
        historical_embeddings: bool = False,
        **train_options: Unpack[TrainOptions],
    ) -> None:
        super().__init__(**train_options)
        if conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, got {conv!r}.")
        self.embedding_dim, self.num_layers, self.conv = int(embedding_dim), int(num_layers), conv
        self.heads = int(heads)
        self.attention_dropout, self.edge_dropout = float(attention_dropout), float(edge_dropout)
        self.id_dropout = float(id_dropout)
        self.user_id_embedding = bool(user_id_embedding)
        self.item_bias = bool(item_bias)
        self.popularity_prior = bool(popularity_prior)
        self.use_user_features = bool(use_user_features)
        self.use_attributes, self.use_user_edges = bool(use_attributes), bool(use_user_edges)
        self.text_knn_k = int(text_knn_k)
        self.template = template
        self.finetune_text_layers = int(finetune_text_layers)
        self.encoder = encoder
        self._given_text = item_text_embeddings
        self.item_item = bool(item_item)
        if item_item_lambda is not None and item_item_lambda <= 0:
            raise ValueError(f"item_item_lambda must be positive, got {item_item_lambda}.")
        if item_item_weight is not None and item_item_weight < 0:
            raise ValueError(f"item_item_weight must be >= 0, got {item_item_weight}.")
        self.item_item_lambda = None if item_item_lambda is None else float(item_item_lambda)
        self.item_item_weight = None if item_item_weight is None else float(item_item_weight)
        self.item_item_max_items = int(item_item_max_items)
        self.item_item_bridge_k = int(item_item_bridge_k)
        self.use_text = bool(use_text)
        self.graph_filter = bool(graph_filter)
        if (graph_filter_dim is None) != (graph_filter_alpha is None):
            raise ValueError("graph_filter_dim and graph_filter_alpha are fixed together.")
        if graph_filter_dim is not None and graph_filter_dim < 0:
            raise ValueError(f"graph_filter_dim must be >= 0, got {graph_filter_dim}.")
        if graph_filter_alpha is not None and graph_filter_alpha < 0:
            raise ValueError(f"graph_filter_alpha must be >= 0, got {graph_filter_alpha}.")
        if graph_filter_weight is not None and graph_filter_weight < 0:
            raise ValueError(f"graph_filter_weight must be >= 0, got {graph_filter_weight}.")
        if not 0 <= selection_margin < 1:
            raise ValueError(f"selection_margin must be in [0, 1), got {selection_margin}.")
        self.graph_filter_dim = None if graph_filter_dim is None else int(graph_filter_dim)
        self.graph_filter_alpha = (None if graph_filter_alpha is None
                                   else float(graph_filter_alpha))
        self.graph_filter_weight = (None if graph_filter_weight is None
                                    else float(graph_filter_weight))
        if graph_filter_attribute_weight is not None and graph_filter_attribute_weight < 0:
            raise ValueError("graph_filter_attribute_weight must be >= 0, got "
                             f"{graph_filter_attribute_weight}.")
        self.graph_filter_attribute_weight = (None if graph_filter_attribute_weight is None
                                              else float(graph_filter_attribute_weight))
        if graph_filter_smoothing is not None and graph_filter_smoothing < 0:
            raise ValueError(f"graph_filter_smoothing must be >= 0, got "
                             f"{graph_filter_smoothing}.")
        self.graph_filter_smoothing = (None if graph_filter_smoothing is None
                                       else float(graph_filter_smoothing))
        self.selection_margin = float(selection_margin)
        if not 0 <= relation_dropout < 1:
            raise ValueError(f"relation_dropout must be in [0, 1), got {relation_dropout}.")
        self.relation_dropout = float(relation_dropout)
        self.relation_selection = bool(relation_selection)
        self.historical_embeddings = bool(historical_embeddings)
        self.inactive_groups: list[str] = []
        self.graph_filter_choice: GraphFilterChoice | None = None
        self.popularity_prior_choice: PopularityPriorChoice | None = None
        self.train_interactions: pd.DataFrame | None = None
        self._text_cache: Tensor | None = None
        self.item_item_choice: ItemItemChoice | None = None
        self.item_item_path: ItemItemPath | None = None

    # ---------------------------------------------------------------- building
    def model_config(self) -> dict[str, Any]:
        return {"embedding_dim": self.embedding_dim, "num_layers": self.num_layers,
                "conv": self.conv, "heads": self.heads,
                "attention_dropout": self.attention_dropout, "edge_dropout": self.edge_dropout,
                "id_dropout": self.id_dropout, "user_id_embedding": self.user_id_embedding,
                "item_bias": self.item_bias, "popularity_prior": self.popularity_prior,
                "use_user_features": self.use_user_features,
                "use_attributes": self.use_attributes, "use_user_edges": self.use_user_edges,
                "text_knn_k": self.text_knn_k, "template": self.template,
                "finetune_text_layers": self.finetune_text_layers, "item_item": self.item_item,
                "item_item_lambda": self.item_item_lambda,
                "item_item_weight": self.item_item_weight,
                "item_item_max_items": self.item_item_max_items,
                "item_item_bridge_k": self.item_item_bridge_k, "use_text": self.use_text,
                "graph_filter": self.graph_filter, "graph_filter_dim": self.graph_filter_dim,
                "graph_filter_alpha": self.graph_filter_alpha,
                "graph_filter_weight": self.graph_filter_weight,
                "graph_filter_attribute_weight": self.graph_filter_attribute_weight,
                "graph_filter_smoothing": self.graph_filter_smoothing,
                "selection_margin": self.selection_margin,
                "relation_dropout": self.relation_dropout,
                "relation_selection": self.relation_selection,
                "historical_embeddings": self.historical_embeddings}

    def _item_text(self, dataset: Dataset, on_progress=None) -> Tensor:
        if not self.use_text:  # ablation: one constant text input for every item
            return torch.ones(dataset.num_items, 1)
        text = self._given_text
        if text is None:
            from ..text import encode_items  # heavy (transformers): only when needed

            text = encode_items(dataset, encoder=self.encoder, template=self.template,
                                on_progress=on_progress)
        text = torch.as_tensor(np.asarray(text, dtype=np.float32))
        if text.ndim != 2 or text.shape[0] != dataset.num_items:
            raise ValueError(f"item_text_embeddings must have shape [{dataset.num_items}, t], "
                             f"got {tuple(text.shape)}.")
        return text

    def _static_graph(self, dataset: Dataset, text: Tensor) -> HeteroData:
        return build_hetero_graph(dataset, interactions=dataset.interactions.iloc[:0],
                                  item_text_embeddings=text, text_knn_k=self.text_knn_k,
                                  include_user_edges=self.use_user_edges)

    def _relations(self, data: HeteroData) -> list[EdgeType]:
        keep = [RATES, RATED_BY]
        attr_types = set(getattr(data, "attr_columns", {}) or {})
        user_attr_types = set(getattr(data, "user_attr_columns", {}) or {})
        for et in data.edge_types:
            if et in (RATES, RATED_BY):
                continue
            if et[0] in attr_types or et[2] in attr_types:
                if self.use_attributes:
                    keep.append(et)
            elif et[0] in user_attr_types or et[2] in user_attr_types:
                if self.use_user_features:  # user <-> attribute value, see propagate's stages
                    keep.append(et)
            elif et in (FOLLOWS, FOLLOWED_BY):
                if self.use_user_edges:
                    keep.append(et)
            elif et == SIMILAR and self.text_knn_k > 0:
                keep.append(et)
        return keep

    def _new_module(self, dataset: Dataset, text: Tensor) -> GNNLLMModule:
        data = self._static_graph(dataset, text)
        relations = self._relations(data)
        node_counts = {nt: data[nt].num_nodes for nt in data.node_types
                       if nt not in ("user", "item")
                       and any(nt in (et[0], et[2]) for et in relations)}
        static = {et: data[et].edge_index for et in relations if et not in (RATES, RATED_BY)}
        return self._network(
            dataset.num_users, dataset.num_items, text, node_counts, relations, static,
            user_feature_matrix(dataset) if self.use_user_features else None)

    def _network(self, num_users: int, num_items: int, text: Tensor,
                 node_counts: dict[str, int], edge_types: list[EdgeType],
                 static_edges: dict[EdgeType, Tensor],
                 user_features: Tensor | None) -> GNNLLMModule:
        """A :class:`GNNLLMModule` over these nodes and relations with this recommender's
        architecture settings (the one place they reach the network)."""
        return GNNLLMModule(
            num_users, num_items, text, node_counts, edge_types, static_edges,
            embedding_dim=self.embedding_dim, num_layers=self.num_layers, conv=self.conv,
            heads=self.heads, attention_dropout=self.attention_dropout,
            edge_dropout=self.edge_dropout, id_dropout=self.id_dropout,
            user_id_embedding=self.user_id_embedding, item_bias=self.item_bias,
            user_features=user_features, relation_dropout=self.relation_dropout,
            historical_embeddings=self.historical_embeddings)

    def fit(
        self,
        dataset: Dataset,
        train: pd.DataFrame,
        valid: pd.DataFrame | None = None,
        on_progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> GNNLLMRecommender:
        """Embed the item texts (unless given), train (see :meth:`EmbeddingRecommender.fit`),
        then fit the item-item path on every training interaction."""
        self.train_interactions = train
        self.item_item_choice = self.item_item_path = self.graph_filter_choice = None
        with distributed.main_first():  # torchrun: rank 0 fills the text cache first
            self._text_cache = self._item_text(dataset, on_progress)
        try:
            super().fit(dataset, train, valid, on_progress, should_stop)
        finally:
            self._text_cache = None
        self._fit_closed_form_parts()
        return self

    # ---------------------------------------------------------------- closed-form paths
    def select_on_validation(self, dataset: Dataset, train: pd.DataFrame, valid: pd.DataFrame,
                             result: TrainResult, on_progress: ProgressCallback | None = None,
                             should_stop: Callable[[], bool] | None = None) -> None:
        """On the validation split: keep only the side-information groups that pay (see
        :meth:`_select_relations`), then choose the popularity prior, the graph filter, then
        the item-item path, each on top of the parts before it (see
        :func:`~recsys_core.models.popularity_prior.select_popularity_prior`,
        :func:`~recsys_core.models.graph_filter.select_graph_filter` and
        :func:`~recsys_core.models.item_item.select_item_item`). The prior comes first: the
        filter's degree normalisation removes popularity, and chosen on a base that already
        carries it, the filter and the whole model did better on validation (synthetic
        sparse set: 0.1010 against 0.0971 with the prior chosen after the filter). Each
        switches on only past ``selection_margin``; ``result.selected`` records the
        validation NDCG@K of the learned embeddings alone, with the prior, with the filter
        and with everything."""
        self.graph_filter_choice = self.item_item_choice = None
        self.popularity_prior_choice = None
        self.inactive_groups = []
        module = self.module
        if len(valid) == 0 or (should_stop is not None and should_stop()):
            self._fixed_choices(result)
            return
        select_relations = self.relation_selection and bool(module.groups)
        choose_prior = self.popularity_prior and self.item_bias
        if not (select_relations or choose_prior or self.graph_filter or self.item_item):
            return  # nothing to choose: no validation pass
        module.set_interactions(*unique_pairs(train))
        module.eval()
        config = self.train_config

        def learned_scores(users: np.ndarray) -> Tensor:
            with torch.no_grad():
                user_emb, item_emb = (t.float().cpu() for t in module())
            return user_emb[torch.from_numpy(users)] @ item_emb.T

        ranking = ValidationRanking(learned_scores, train, valid, dataset.num_users,
                                    dataset.num_items, k=config.eval_k, seed=config.seed)
        if select_relations:
            if self._select_relations(ranking, result):
                # The learned score without the dropped groups (same users and targets).
                ranking.set_base(learned_scores(ranking.users))
        if not (choose_prior or self.graph_filter or self.item_item):
            return
        learned_ndcg = ranking.base_ndcg
        if choose_prior:
            prior = select_popularity_prior(ranking, margin=self.selection_margin,
                                            on_progress=on_progress, should_stop=should_stop)
            self.popularity_prior_choice = prior
            result.selected["popularity_prior"] = prior.summary()
            if prior.relative_weight > 0:
                term = prior_term(ranking, prior.values)
                ranking.add(prior.relative_weight * ranking.spread_ratio(term) * term)
        prior_ndcg = ranking.base_ndcg
        if self.graph_filter:
            settings = (None if self.graph_filter_dim is None
                        else ((self.graph_filter_dim, self.graph_filter_alpha),))
            weights = (DEFAULT_FILTER_WEIGHTS if self.graph_filter_weight is None
                       else (self.graph_filter_weight,))
            gammas = (DEFAULT_ATTRIBUTE_WEIGHTS if self.graph_filter_attribute_weight is None
                      else (self.graph_filter_attribute_weight,))
            smoothings = (DEFAULT_SMOOTHINGS if self.graph_filter_smoothing is None
                          else (self.graph_filter_smoothing,))
            fixed = (settings is not None and len(settings) == len(weights) == len(gammas)
                     == len(smoothings) == 1)  # the user's: keep it
            choice = select_graph_filter(ranking, settings, weights, self.item_item_max_items,
                                         None if fixed else self.selection_margin,
                                         config.seed, on_progress, should_stop,
                                         self._filter_attributes(dataset), gammas, smoothings)
            self.graph_filter_choice = choice
            result.selected["graph_filter"] = choice.summary()
            if choice.term is not None:
                term = choice.term
                ranking.add(choice.relative_weight * ranking.spread_ratio(term) * term)
        filtered_ndcg = ranking.base_ndcg
        if self.item_item:
            lambdas = (DEFAULT_REG_LAMBDAS if self.item_item_lambda is None
                       else (self.item_item_lambda,))
            weights = (DEFAULT_RELATIVE_WEIGHTS if self.item_item_weight is None
                       else (self.item_item_weight,))
            self.item_item_choice = select_item_item(
                ranking, train, valid, dataset.num_users, dataset.num_items, k=config.eval_k,
                reg_lambdas=lambdas, relative_weights=weights,
                max_items=self.item_item_max_items, seed=config.seed, device=config.device,
                on_progress=on_progress, should_stop=should_stop,
                text=module.item_text.float().cpu() if self.use_text else None,
                bridge_k=self.item_item_bridge_k,
                margin=None if len(lambdas) == len(weights) == 1 else self.selection_margin)
            result.selected["item_item"] = self.item_item_choice.summary()
        result.selected["validation"] = {
            "valid_ndcg_learned": learned_ndcg, "valid_ndcg_prior": prior_ndcg,
            "valid_ndcg_graph": filtered_ndcg,
            "valid_ndcg": (self.item_item_choice.valid_ndcg if self.item_item_choice
                           else filtered_ndcg)}

    @torch.no_grad()
    def _select_relations(self, ranking: ValidationRanking, result: TrainResult) -> bool:
        """Switch off, one group at a time (sorted by name), each side-information group
        whose removal does not lower validation NDCG@K of the learned score (``ranking``'s
        base); ``True`` when any was switched off. The network was trained with
        ``relation_dropout``, so it is valid with any group left out."""
        module = self.module
        before = ranking.base_ndcg
        current, tried = before, {}
        for group in list(module.active_groups()):
            module.set_group_active(group, False)
            user_emb, item_emb = (t.float().cpu() for t in module())
            scores = user_emb[torch.from_numpy(ranking.users)] @ item_emb.T
            without = ranking.ndcg(scores.masked_fill(ranking.seen, float("-inf")))
            tried[group] = float(without)
            if without >= current:  # it does not pay: leave it off
                current = without
                self.inactive_groups.append(group)
            else:
                module.set_group_active(group, True)
        result.selected["relations"] = {
            "kept": module.active_groups(), "dropped": list(self.inactive_groups),
            "valid_ndcg_all": float(before), "valid_ndcg": float(current),
            "valid_ndcg_without": tried}
        return bool(self.inactive_groups)

    def _filter_attributes(self, dataset: Dataset) -> sp.csr_matrix | None:
        """``[items, a]`` item-attribute incidence the graph filter may use (``None`` without
        attribute columns or with ``use_attributes`` off); built once per dataset, since
        selection and the final fit both read it."""
        if not (self.use_attributes and dataset.attribute_columns):
            return None
        cached = getattr(self, "_attribute_incidence", None)
        if cached is None or cached[0] is not dataset:
            data = build_hetero_graph(dataset, interactions=dataset.interactions.iloc[:0],
                                      include_user_edges=False, include_user_attributes=False)
            cached = (dataset, item_attribute_matrix(data, dataset.num_items))
            self._attribute_incidence = cached
        return cached[1]

    def _fixed_choices(self, result: TrainResult) -> None:
        """Without a validation split, use the settings given (nothing to choose)."""
        if (self.graph_filter and self.graph_filter_dim is not None
                and self.graph_filter_weight is not None):
            self.graph_filter_choice = GraphFilterChoice(
                self.graph_filter_dim, self.graph_filter_alpha, self.graph_filter_weight,
                float("nan"), float("nan"),
                attribute_weight=self.graph_filter_attribute_weight or 0.0,
                smoothing=self.graph_filter_smoothing or 0.0)
            result.selected["graph_filter"] = self.graph_filter_choice.summary()
        if (self.item_item and self.item_item_lambda is not None
                and self.item_item_weight is not None):
            self.item_item_choice = ItemItemChoice(self.item_item_lambda, self.item_item_weight,
                                                   float("nan"), float("nan"),
                                                   bridge_scale=1.0)
            result.selected["item_item"] = self.item_item_choice.summary()

    def _scale_users(self) -> np.ndarray:
        """Users (with training interactions; at most 2,000, seeded) over which a chosen
        part's absolute scale is set on the final model, as its spread ratio was on
        validation."""
        matrix = self.train_matrix
        users = np.flatnonzero(np.diff(matrix.indptr) > 0)
        if len(users) > 2000:
            users = np.sort(np.random.default_rng(self.train_config.seed).choice(
                users, 2000, replace=False))
        return users

    @torch.no_grad()
    def _fit_closed_form_parts(self) -> None:
        """Fit the chosen popularity prior, graph filter and item-item path on every training
        interaction, in the order they were chosen. The filter and the path make one additive
        path over the head items (``gf_scale * W + ii_scale * B``); the prior enters the
        item-bias column, so scores, explanations and saved runs carry it like any learned
        bias. Each absolute scale is its chosen relative weight times the spread ratio of the
        score so far to its term on the final model, as on validation."""
        gf, ii, prior = (self.graph_filter_choice, self.item_item_choice,
                         self.popularity_prior_choice)
        use_gf = gf is not None and gf.relative_weight > 0
        use_ii = ii is not None and ii.relative_weight > 0
        module = self.module
        has_prior = getattr(module, "item_prior", None) is not None
        if has_prior:  # a prior set before (a refit of the parts) leaves the cache too
            self._item_emb[:, -1] -= module.item_prior.cpu()
            module.item_prior.zero_()
        use_prior = has_prior and prior is not None and prior.relative_weight > 0
        if not (use_gf or use_ii or use_prior):
            return
        matrix = self.train_matrix
        items = covered_items(matrix, self.item_item_max_items)
        head = sp.csr_matrix(matrix)[:, items]
        users = self._scale_users()
        seen = torch.from_numpy(head[users].toarray() > 0)
        # The prior first, as chosen: its spread against the learned score, every item.
        scales = {"popularity_prior": self._fit_popularity_prior(users)} if use_prior else {}
        # The score so far on the head, as the final model gives it (prior included).
        score = torch.from_numpy(super().score(users, items))
        parts = []  # (name, head weights, chosen relative weight), the filter first
        if use_gf:
            attributes = self._filter_attributes(self.dataset)
            parts.append(("graph_filter", GraphFilterBasis(
                head, gf.ideal_dim, self.train_config.seed,
                None if attributes is None else attributes[items],
                gf.attribute_weight, gf.smoothing).weights(gf.ideal_dim, gf.ideal_weight),
                gf.relative_weight))
        if use_ii:
            parts.append(("item_item", ease_weights(head, ii.reg_lambda, self.train_config.device),
                          ii.relative_weight))
        combined = torch.zeros(len(items), len(items))
        for name, weights, relative in parts:
            term = torch.from_numpy(np.asarray(head[users] @ weights.numpy(), np.float32))
            scale = relative * spread_ratio(score[~seen], term[~seen])
            combined += scale * weights
            score = score + scale * term
            scales[name] = scale
        if self.train_result is not None:
            for name, scale in scales.items():
                if name in self.train_result.selected:
                    self.train_result.selected[name]["scale"] = scale
        if not parts:
            return
        path = ItemItemPath(matrix.shape[1], torch.from_numpy(items), combined, 1.0,
                            ii.reg_lambda if use_ii else 0.0, bridge_scale=0.0)
        if use_ii and self.use_text and self.item_item_bridge_k > 0 and ii.bridge_scale > 0:
            text = self.module.item_text.float().cpu()
            others = torch.from_numpy(np.setdiff1d(np.arange(matrix.shape[1]), items))
            if len(others):
                neighbours, bridge = path.text_neighbours(text[others], text,
                                                          self.item_item_bridge_k)
                path = ItemItemPath(matrix.shape[1], path.items, combined, 1.0,
                                    path.reg_lambda, others, neighbours, bridge,
                                    ii.bridge_scale)
        if use_ii:  # warm items past the dense head get sparse EASE columns (bounded memory)
            path = path.with_tail(matrix, ii.reg_lambda, scales["item_item"])
        self.item_item_path = path

    def _prior_values(self) -> np.ndarray:
        """The chosen transform of every item's number of training users, in ``[0, 1]``."""
        return popularity_values(item_popularity(self.train_matrix),
                                 self.popularity_prior_choice.transform)

    def _fit_popularity_prior(self, users: np.ndarray) -> float:
        """Set the prior in the module and the cached embeddings; returns its scale, set
        against the learned score over every item of ``users``, as its spread ratio was on
        validation."""
        module = self.module
        values = self._prior_values()
        score = torch.from_numpy(super().score(users))
        seen = torch.from_numpy(self.train_matrix[users].toarray() > 0)
        scale = prior_scale(score, seen, values, self.popularity_prior_choice.relative_weight)
        prior = torch.from_numpy(scale * values)
        module.item_prior.copy_(prior.to(module.item_prior.device))
        self._item_emb[:, -1] += prior  # the cached embeddings' bias column, as a forward gives
        return scale

    def build_module(self, dataset: Dataset, text: Tensor | None = None) -> GNNLLMModule:
        if text is None:
            text = self._text_cache if self._text_cache is not None else self._item_text(dataset)
        module = self._new_module(dataset, text)
        if self.finetune_text_layers and self._text_cache is not None:  # fitting, not restoring
            from ..text import TextEncoder

            encoder = TextEncoder(getattr(self.encoder, "model_id", None),
                                  device=pick_device(self.train_config.device), use_cache=False)
            encoder.trainable_top_layers(self.finetune_text_layers)
            module.attach_text_encoder(encoder, dataset.item_texts(self.template))
        return module

    def after_training(self) -> None:
        module = self.module
        module._user_history = {}  # training's historical embeddings: scoring never reads them
        for group in self.inactive_groups:  # as chosen on validation (the refit has them all)
            if group in module.groups:
                module.set_group_active(group, False)
        if getattr(module, "text_model", None) is None:
            return
        module.detach_text_encoder()
        if SIMILAR in module.edge_types:  # neighbours of the fine-tuned texts, as on restore
            edges, _ = text_knn_edges(module.item_text.cpu(), self.text_knn_k)
            setattr(module, f"static__{edge_key(SIMILAR)}", edges.to(module.item_text.device))

    def restore(self, dataset: Dataset, train: pd.DataFrame,
                tensors: dict[str, Tensor]) -> GNNLLMRecommender:
        self.train_interactions = train
        return super().restore(dataset, train, tensors)

    def state_tensors(self) -> dict[str, Tensor]:
        tensors = super().state_tensors()
        if self.item_item_path is not None:
            tensors.update(self.item_item_path.state_tensors(ITEM_ITEM_PREFIX))
        return tensors

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        path = {k: v for k, v in tensors.items() if k.startswith(ITEM_ITEM_PREFIX)}
        rest = {k: v for k, v in tensors.items() if k not in path}
        # Tensors runs saved by older versions lack, filled with what those runs meant.
        defaults: dict[str, Tensor] = {}
        if "group_active" not in rest:  # saved before relation selection: all groups on
            if self.module is None:
                self.module = self._module_for_restore(rest)
            defaults["group_active"] = torch.ones(len(self.module.groups), dtype=torch.uint8)
        if "item_prior" not in rest and self.item_bias:  # saved before the prior: none
            defaults["item_prior"] = torch.zeros(self.dataset.num_items)
        self.defaulted_state_keys = tuple(defaults)
        super().load_state_tensors({**rest, **defaults})
        active = set(self.module.active_groups())
        self.inactive_groups = [g for g in self.module.groups if g not in active]
        self.item_item_path = (ItemItemPath.from_state_tensors(path, self.dataset.num_items,
                                                               ITEM_ITEM_PREFIX)
                               if path else None)

    # ---------------------------------------------------------------- scoring
    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Graph score (dot product) plus the item-item path's term."""
        scores = super().score(users, items)
        if self.item_item_path is not None:
            scores += self.item_item_path.scores(self.train_matrix[np.asarray(users)], items)
        return scores

    def _module_for_restore(self, tensors: dict[str, Tensor]) -> GNNLLMModule:
        if "item_text" not in tensors:
            raise ValueError(f"{self.name}: state tensors lack 'item_text'.")
        return self.build_module(self.dataset, tensors["item_text"].float())

    # ---------------------------------------------------------------- graph access
    def graph(self) -> HeteroData:
        """The graph the model scores over (training interactions + static relations).

        Edit its ``edge_index`` tensors (drop or add edges) and pass it to
        :meth:`score_with_graph` to see how scores change without retraining.
        """
        self._check_fitted()
        frame = self.train_interactions.drop_duplicates([USER_IDX, ITEM_IDX])
        frame = frame.sort_values([USER_IDX, ITEM_IDX], kind="stable")
        data = build_hetero_graph(self.dataset, interactions=frame,
                                  item_text_embeddings=self.module.item_text,
                                  text_knn_k=self.text_knn_k,
                                  include_user_edges=self.use_user_edges)
        for et in list(data.edge_types):
            if tuple(et) not in self.module.edge_types:
                del data[et]
        return data

    @torch.no_grad()
    def score_new_items(
        self,
        text_embeddings: Tensor | np.ndarray,
        attributes: list[dict[str, list[str]]] | None = None,
        users: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores of items that are not in the catalogue, known by their text (and attributes).

        Each new item is scored exactly as the model scores a catalogue item without
        interactions: a copy of the network with the new items appended (text features, no id
        embedding, edges to the attribute nodes named in ``attributes``) propagates over the
        training graph, so their final representations come from the same layers.

        Args:
            text_embeddings (Tensor or array): ``[n, t]`` embeddings of the new items' texts
                from the model's text encoder.
            attributes (list of dict, optional): Per new item, attribute column -> values
                (e.g. ``{"genre": ["Drama"]}``); values the model has never seen are ignored.
            users (array, optional): User indices to score. (default: all)

        Returns:
            ``[len(users), n]`` scores, comparable with :meth:`score` (a new item has no
            interactions, so, like a cold catalogue item, its item-item term comes through
            the text bridge of :class:`~recsys_core.models.item_item.ItemItemPath`).
        """
        self._check_fitted()
        module = self.module
        text = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32)).reshape(
            -1, module.item_text.size(1))
        count, base = text.size(0), self.dataset.num_items
        attributes = list(attributes or [{}] * count)
        if len(attributes) != count:
            raise ValueError(f"attributes has {len(attributes)} entries for {count} new items.")
        static = {et: getattr(module, name).cpu() for et, name in module._static.items()}
        # Only the attribute node ids are needed: no interactions, user or text-kNN edges.
        data = build_hetero_graph(self.dataset, interactions=self.dataset.interactions.iloc[:0],
                                  include_user_edges=False)
        for node_type, column in (getattr(data, "attr_columns", {}) or {}).items():
            forward, reverse = attribute_edge_types(node_type)
            if forward not in static and reverse not in static:
                continue
            index = {str(v): k for k, v in enumerate(data[node_type].node_ids)}
            pairs = [(base + n, index[str(v)]) for n, values in enumerate(attributes)
                     for v in values.get(column, values.get(node_type, [])) if str(v) in index]
            if not pairs:
                continue
            extra = torch.tensor(pairs, dtype=torch.long).T
            if forward in static:
                static[forward] = torch.cat([static[forward], extra], 1)
            if reverse in static:
                static[reverse] = torch.cat([static[reverse], extra.flip(0)], 1)
        grown = self._network(
            self.dataset.num_users, base + count, torch.cat([module.item_text.cpu(), text]),
            module.node_counts, module.all_edge_types, static,
            getattr(module, "user_features", None))
        state = {k: v.cpu() for k, v in module.state_dict().items()}
        state["item_text"] = grown.item_text
        for key in ("item_id.weight", "bias_id.weight", "item_prior"):  # new items: no id
            if key in state:  # terms and no interactions (a prior of 0)
                state[key] = torch.cat([state[key], state[key].new_zeros(count,
                                                                         *state[key].shape[1:])])
        grown.load_state_dict(state, strict=True)
        grown.set_interactions(*self._inference_pairs())
        user_emb, item_emb = grown.eval()()
        users = np.arange(self.dataset.num_users) if users is None else np.asarray(users)
        scores = dot_scores(user_emb, item_emb, users, np.arange(base, base + count))
        path = self.item_item_path
        if path is not None:  # the text bridge, as for a catalogue item outside the path
            neighbours, weights = path.text_neighbours(text, module.item_text.float().cpu(),
                                                       self.item_item_bridge_k)
            scores += path.bridged_scores(self.train_matrix[users], neighbours, weights)
        return scores

    def _check_fitted(self) -> None:
        if self.module is None or self.dataset is None:
            raise RuntimeError("GNNLLMRecommender is not fitted.")

    def _edges_of(self, data: HeteroData) -> dict[EdgeType, Tensor]:
        for nt, n in (("user", self.dataset.num_users), ("item", self.dataset.num_items)):
            if nt in data.node_types and data[nt].num_nodes not in (None, n):
                raise ValueError(f"The graph has {data[nt].num_nodes} {nt} nodes; the model "
                                 f"was fitted with {n}. Edit edges, not node sets.")
        edges = {}
        for et in data.edge_types:
            ei = data[et].edge_index
            if ei.dim() != 2 or ei.size(0) != 2:
                raise ValueError(f"edge_index of {et} must have shape [2, E].")
            edges[tuple(et)] = ei.long().cpu()
        return edges

    @torch.no_grad()
    def embeddings_with_graph(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        """Final ``(user_emb, item_emb)`` recomputed on an (edited) graph, no training."""
        self._check_fitted()
        module = self.module.eval()
        user_emb, item_emb, _ = module.propagate(self._edges_of(data))
        return user_emb, item_emb

    def score_with_graph(self, data: HeteroData, users: np.ndarray,
                         items: np.ndarray | None = None) -> np.ndarray:
        """Scores ``[len(users), len(items)]`` recomputed on an (edited) graph.

        Args:
            data (HeteroData): A graph like :meth:`graph` returns, with edges removed/added.
            users (array): User indices.
            items (array, optional): Item indices (default: all).
        """
        scores = dot_scores(*self.embeddings_with_graph(data), users, items)
        if self.item_item_path is not None:
            rates = data[RATES].edge_index.long().cpu() if RATES in data.edge_types else (
                torch.zeros(2, 0, dtype=torch.long))
            history = interaction_matrix(
                pd.DataFrame({USER_IDX: rates[0].numpy(), ITEM_IDX: rates[1].numpy()}),
                self.dataset.num_users, self.dataset.num_items)
            scores += self.item_item_path.scores(history[np.asarray(users)], items)
        return scores

    @torch.no_grad()
    def attention(
        self,
        user_idx: int | None = None,
        data: HeteroData | None = None,
    ) -> dict[tuple[int, EdgeType], tuple[Tensor, Tensor]]:
        """Attention weights per layer and relation: ``(edge_index [2, E], alpha [E, heads])``.

        For each target node, a relation's weights sum to 1 over its incoming edges per head.
        With ``user_idx`` only the edges that feed that user's final representation are kept
        (see :meth:`GNNLLMModule.receptive_field`).

        Args:
            user_idx (int, optional): Restrict to one user's receptive field. (default: all)
            data (HeteroData, optional): Graph to use instead of :meth:`graph` (e.g. edited).
        """
        self._check_fitted()
        if self.conv not in ATTENTION_CONVS:
            raise ValueError(f"Attention weights need conv='gat' or 'gatv2'; this model uses "
                             f"'{self.conv}'.")
        module = self.module.eval()
        edges = (module.edge_index_dict() if data is None else self._edges_of(data))
        _, _, attention = module.propagate(edges, return_attention=True)
        attention = {k: (ei.cpu(), alpha.float().cpu()) for k, (ei, alpha) in attention.items()}
        if user_idx is None:
            return attention
        if not 0 <= int(user_idx) < self.dataset.num_users:
            raise ValueError(f"user_idx {user_idx} is out of range [0, {self.dataset.num_users}).")
        masks = self.module.receptive_field(edges, "user", int(user_idx))
        return {key: (ei[:, masks[key]], alpha[masks[key]])
                for key, (ei, alpha) in attention.items()}


def attention_frame(model: GNNLLMRecommender, user_idx: int) -> pd.DataFrame:
    """One user's attention weights as a tidy frame (layer, relation, source, target, head,
    weight), see :meth:`GNNLLMRecommender.attention`."""
    rows = []
    for (layer, et), (ei, alpha) in model.attention(user_idx).items():
        for h in range(alpha.size(1)):
            rows.append(pd.DataFrame({
                "layer": layer, "relation": "__".join(et), "source_type": et[0],
                "source": ei[0].numpy(), "target_type": et[2], "target": ei[1].numpy(),
                "head": h, "weight": alpha[:, h].numpy()}))
    columns = ["layer", "relation", "source_type", "source", "target_type", "target", "head",
               "weight"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


__all__ = ["ATTENTION_CONVS", "CONVS", "BipartiteGCNConv", "GNNLLMModule", "GNNLLMRecommender",
           "SortedEdges", "SparseGATConv", "Stage", "StageProgram", "attention_frame",
           "make_conv", "segment_softmax"]
