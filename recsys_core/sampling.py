"""Mini-batch subgraph sampling for the graph recommenders, and the full-graph / mini-batch rule.

Full-graph training runs every message-passing edge in every step, so a step costs time and
memory in proportion to the whole graph and an epoch grows with its square. Mini-batch
training draws, for each batch of target edges, the subgraph that the batch's seed nodes
(its users, positive items and negative items) read from, with at most ``num_neighbors``
incoming edges per node and relation, so a step's memory is bounded by the batch.

PyG's own samplers (:class:`torch_geometric.sampler.NeighborSampler` behind
:class:`~torch_geometric.loader.LinkNeighborLoader`) need the compiled ``pyg-lib`` or
``torch-sparse`` operators (PyG 2.8 has no pure-Python fallback: it raises ``ImportError``);
neither ships a wheel for torch 2.13 on PyPI. They also expand every relation at every hop,
while the flagship's propagation is a program of stages whose states feed each other inside a
layer (:meth:`~recsys_core.models.gnn_llm.GNNLLMModule.stage_program`). :class:`NeighborSampler`
here is a :class:`torch_geometric.sampler.BaseSampler` written with vectorised torch
operations: it expands the relations in the order a model's ``sampling_hops`` give (the
flagship's stages walked backwards, as its receptive field is; LightGCN's layers), returns
PyG's :class:`~torch_geometric.sampler.HeteroSamplerOutput` and, through :meth:`subgraph`, a
:class:`~torch_geometric.data.HeteroData` mini-batch (``n_id``, ``e_id``, ``batch_size`` as
PyG's loaders set them), which pins and moves to the GPU like any PyG batch.

Where a mini-batch step's time goes (``benchmarks/bench_scale.py``'s 5M data set: 3.3M
training interactions, 100k users, 30k items; the flagship's batch of 8,192, 10 neighbours;
one CPU thread, CPU time): about 0.8 s per step, 402 steps per epoch. Sampling takes 0.07 s.
The subgraph holds about 34k users, 28k items and 270k edges: the items' two-hop receptive
field (items read users that read items) reaches most of the catalogue. The pass over it
computes each stage only for the rows later stages read
(:meth:`~recsys_core.models.gnn_llm.GNNLLMModule.stage_rows`: item stages for the batch's
items only, the attributes' own update not at all), about 0.4 s forward and backward. The
sampled softmax over 2,048 candidates, its gradients in the same block-wise pass
(:func:`~recsys_core.training.masked_softmax_loss`), takes about 0.3 s; it grows with the
batch's distinct users, not with the graph. A step's subgraph is bounded by the batch (its
items x neighbours x neighbours edges), not by the graph, but on graphs this small it is
the catalogue that bounds it: at 1M interactions (20k users, 10k items) a step holds 14k
users, 10k items and 120k edges and takes about 0.4 s. So an epoch's cost per
interaction still grows from 1M to 5M, as the sampled subgraphs grow with the catalogue
towards the batch's bound.
A batch four times larger halves the epoch, because its subgraph hardly grows. But at 1M
interactions (random text features) it reached a lower validation NDCG@20 in the same time
(0.204 after 105 s against 0.224 after 116 s with 8,192), so the batch stays the same in both
modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    HeteroSamplerOutput,
    NegativeSampling,
    NodeSamplerInput,
)

EdgeType = tuple[str, str, str]

#: Training modes of :class:`~recsys_core.training.TrainConfig`.
TRAINING_MODES = ("auto", "full", "minibatch")
#: ``auto`` trains on the full graph up to this many message-passing interactions: below it a
#: full-graph epoch costs no more than a sampled one (a default batch's subgraph already
#: reaches most of such a graph) and skips the sampling; above it the full graph's epoch grows
#: with the square of the interactions. Measured with ``benchmarks/bench_gpu.py`` on 2 busy CPU
#: cores at 169k interactions: 12.2 s per full-graph epoch, 11.5 s per mini-batch epoch.
FULL_GRAPH_MAX_INTERACTIONS = 200_000
#: Full-graph training is refused above this many interactions (a step's attention tensors
#: and the graph's sorted copies outgrow a machine's memory well before an epoch ends).
FULL_GRAPH_HARD_LIMIT = 20_000_000


@dataclass
class ModeChoice:
    """The training mode chosen for one run, and why (reported by the CLI, run JSON and app).

    Attributes:
        mode (str): ``"full"`` or ``"minibatch"``.
        reason (str): One sentence: the rule or the option that chose it.
        interactions (int): Message-passing interactions of the training graph.
        num_neighbors (int): Neighbours sampled per node and relation (mini-batch only).
    """

    mode: str
    reason: str
    interactions: int
    num_neighbors: int = 0

    def summary(self) -> dict:
        return {"mode": self.mode, "reason": self.reason, "interactions": self.interactions,
                "num_neighbors": self.num_neighbors}


def choose_training_mode(requested: str, interactions: int, has_graph: bool = True,
                         num_neighbors: int = 10,
                         max_full: int = FULL_GRAPH_MAX_INTERACTIONS) -> ModeChoice:
    """Full-graph or mini-batch training for a graph of ``interactions`` edges.

    ``"auto"`` picks full-graph training up to ``max_full`` interactions (faster there) and
    mini-batch training above; ``"full"`` and ``"minibatch"`` force a mode.

    Args:
        requested (str): ``"auto"``, ``"full"`` or ``"minibatch"``.
        interactions (int): Training interactions (message-passing edges).
        has_graph (bool): Whether the model passes messages at all (MF does not: its
            mini-batches are the batch's rows). (default: :obj:`True`)
        num_neighbors (int): Sampled neighbours per node and relation. (default: :obj:`10`)
        max_full (int): The ``auto`` threshold. (default:
            :obj:`FULL_GRAPH_MAX_INTERACTIONS`)

    Raises:
        ValueError: An unknown mode, or ``"full"`` on a graph above
            :data:`FULL_GRAPH_HARD_LIMIT` (the message names the limit and what to do).
    """
    if requested not in TRAINING_MODES:
        raise ValueError(f"training_mode must be one of {TRAINING_MODES}, got {requested!r}.")
    if requested == "full":
        if has_graph and interactions > FULL_GRAPH_HARD_LIMIT:
            raise ValueError(
                f"training_mode=full cannot train on {interactions:,} interactions: full-graph "
                f"training is limited to {FULL_GRAPH_HARD_LIMIT:,} (every step holds the whole "
                "graph). Use --param training_mode=minibatch (or auto), or more processes with "
                "torchrun (see README, Training at scale).")
        return ModeChoice("full", "training_mode=full was given", interactions)
    if requested == "minibatch":
        return ModeChoice("minibatch", "training_mode=minibatch was given", interactions,
                          num_neighbors if has_graph else 0)
    if has_graph and interactions > max_full:
        return ModeChoice("minibatch", f"{interactions:,} interactions > {max_full:,}: sampled "
                          f"subgraphs of {num_neighbors} neighbours per node and relation",
                          interactions, num_neighbors)
    why = (f"{interactions:,} interactions <= {max_full:,}: full graph (faster at this size)"
           if has_graph else "no message passing: full tables (a batch reads only its rows)")
    return ModeChoice("full", why, interactions)


@dataclass
class SamplingPlan:
    """What a module tells :class:`NeighborSampler` about its graph.

    Attributes:
        edge_index_dict (dict): Edge type -> ``[2, E]`` global edges (CPU) messages may pass
            over (the training interactions included).
        num_nodes (dict): Node type -> node count.
        hops (list): Relations expanded at each hop, from the seeds outwards (each hop reads
            the node sets as they stood when it began).
        interaction_types (tuple): Relations whose edge ``e`` is training interaction ``e``
            (hidden and dropped together with it).
        edge_dropout (float): Share of sampled interaction edges dropped in training.
            (default: :obj:`0.0`)
        seeds_only (tuple): Node types whose incoming relations are expanded for the seeds
            only: the model reads the other nodes of these types from historical
            embeddings, so the sample stops at them. (default: none)
    """

    edge_index_dict: dict[EdgeType, Tensor]
    num_nodes: dict[str, int]
    hops: list[list[EdgeType]]
    interaction_types: tuple[EdgeType, ...] = ()
    edge_dropout: float = 0.0
    seeds_only: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


class _CSC:
    """One relation's edges grouped by target: ``ptr [num_dst + 1]``, ``src`` and ``eid`` in
    target order."""

    def __init__(self, edge_index: Tensor, num_dst: int) -> None:
        dst = edge_index[1].long()
        order = torch.argsort(dst, stable=True)
        self.src = edge_index[0].long()[order].contiguous()
        self.eid = order
        self.ptr = torch.zeros(num_dst + 1, dtype=torch.long)
        self.ptr[1:] = torch.cumsum(torch.bincount(dst, minlength=num_dst), 0)


class NeighborSampler(BaseSampler):
    r"""Samples, for a set of seed nodes, at most ``num_neighbors`` incoming edges per node and
    relation, hop by hop along a :class:`SamplingPlan`.

    At each hop, every node of a relation's target type that has joined the subgraph (and was
    not expanded for that relation yet) draws its incoming edges: all of them when it has at
    most ``num_neighbors``, otherwise ``num_neighbors`` uniform draws with replacement
    (repeats merged, so a few nodes keep fewer). Their sources join the subgraph. Each node is
    expanded once per relation, so the edge set holds, for every node that needs it, one
    sample of its neighbourhood per relation: a model that runs its propagation on the
    subgraph computes the seeds' outputs from those samples (exactly, where no node has more
    than ``num_neighbors`` neighbours). Hidden interactions (a batch's targets) and, in
    training, a random ``edge_dropout`` share of the sampled interaction edges carry no
    messages. Memory and time per call grow with the seeds and ``num_neighbors``, not with
    the graph.

    Args:
        plan (SamplingPlan): The graph and the order of its relations.
        num_neighbors (int): Incoming edges drawn per node and relation. (default: :obj:`10`)
        generator (torch.Generator, optional): Source of every draw (CPU). (default: a
            generator seeded with 0)
    """

    def __init__(self, plan: SamplingPlan, num_neighbors: int = 10,
                 generator: torch.Generator | None = None) -> None:
        if num_neighbors < 1:
            raise ValueError(f"num_neighbors must be at least 1, got {num_neighbors}.")
        self.plan = plan
        self.num_neighbors = int(num_neighbors)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.num_nodes = dict(plan.num_nodes)
        self.csc = {tuple(et): _CSC(ei.cpu(), self.num_nodes[et[2]])
                    for et, ei in plan.edge_index_dict.items()}
        self.edge_types = list(self.csc)
        num_interactions = max((plan.edge_index_dict[et].size(1)
                                for et in plan.interaction_types), default=0)
        # Reused across calls (reset after each): per-type global -> local slots, per-relation
        # "already expanded" flags, hidden interactions.
        self._slot = {nt: torch.full((n,), -1, dtype=torch.long) for nt, n in self.num_nodes.items()}
        self._done = {et: torch.zeros(self.num_nodes[et[2]], dtype=torch.bool)
                      for et in self.edge_types}
        self._hidden = torch.zeros(num_interactions, dtype=torch.bool)
        self.training = True

    # ------------------------------------------------------------------ PyG's sampler API
    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        """Sample around ``index.node`` (global ids of ``index.input_type``)."""
        return self.sample({index.input_type: index.node})

    def sample_from_edges(self, index: EdgeSamplerInput,
                          neg_sampling: NegativeSampling | None = None) -> HeteroSamplerOutput:
        """Sample around the seed edges' endpoints; the seed edges themselves (``input_id``:
        their interaction positions) carry no messages. Negatives are drawn by the training
        loop (it excludes each user's seen items), so ``neg_sampling`` must be ``None``."""
        if neg_sampling is not None:
            raise ValueError("NeighborSampler takes the batch's negatives as seeds; draw them "
                             "before sampling.")
        src_type, _, dst_type = index.input_type
        if src_type == dst_type:
            seeds = {src_type: torch.unique(torch.cat([index.row, index.col]))}
        else:
            seeds = {src_type: torch.unique(index.row), dst_type: torch.unique(index.col)}
        return self.sample(seeds, hidden=index.input_id)

    # ------------------------------------------------------------------ sampling
    def sample(self, seeds: dict[str, Tensor], hidden: Tensor | None = None) -> HeteroSamplerOutput:
        """The subgraph around ``seeds``.

        Args:
            seeds (dict): Node type -> ``[n]`` distinct global ids; they come first (in this
                order) in the output's ``node`` of their type.
            hidden (Tensor, optional): Interaction positions that carry no messages.

        Returns:
            :class:`~torch_geometric.sampler.HeteroSamplerOutput` with ``node`` (global ids per
            type, seeds first), ``row`` / ``col`` (local source / target per relation),
            ``edge`` (global edge ids) and ``metadata`` = seed counts per type.
        """
        k, gen = self.num_neighbors, self.generator
        nodes = {nt: [seeds[nt].long().cpu()] if nt in seeds else [] for nt in self.num_nodes}
        count = {nt: 0 for nt in self.num_nodes}
        count_seeds = {nt: (seeds[nt].numel() if nt in seeds else 0) for nt in self.num_nodes}
        for nt, ids in seeds.items():
            ids = ids.long().cpu()
            self._slot[nt][ids] = torch.arange(ids.numel())
            count[nt] = ids.numel()
        if hidden is not None and self._hidden.numel():
            hidden = hidden.long().cpu()
            self._hidden[hidden] = True
        edges: dict[EdgeType, list[tuple[Tensor, Tensor, Tensor]]] = {
            et: [] for et in self.edge_types}
        expanded: dict[EdgeType, list[Tensor]] = {et: [] for et in self.edge_types}
        try:
            for hop in self.plan.hops:
                frontier = {nt: torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
                            for nt, parts in nodes.items()}
                found: dict[str, list[Tensor]] = {}
                for et in hop:
                    et = tuple(et)
                    if et not in self.csc:
                        continue
                    targets = frontier[et[2]]
                    if et[2] in self.plan.seeds_only:  # the rest come from the model's history
                        targets = targets[:count_seeds[et[2]]]
                    targets = targets[~self._done[et][targets]]
                    if targets.numel() == 0:
                        continue
                    self._done[et][targets] = True
                    expanded[et].append(targets)
                    src, dst, eid = self._draw(et, targets, k, gen)
                    if et in self.plan.interaction_types and eid.numel():
                        keep = ~self._hidden[eid] if self._hidden.numel() else None
                        if self.training and self.plan.edge_dropout > 0:
                            drop = torch.rand(eid.numel(), generator=gen) < self.plan.edge_dropout
                            keep = ~drop if keep is None else keep & ~drop
                        if keep is not None:
                            src, dst, eid = src[keep], dst[keep], eid[keep]
                    edges[et].append((src, dst, eid))
                    found.setdefault(et[0], []).append(src)
                for nt, parts in found.items():  # new sources join after the hop
                    cand = torch.unique(torch.cat(parts))
                    new = cand[self._slot[nt][cand] < 0]
                    if new.numel():
                        self._slot[nt][new] = torch.arange(count[nt], count[nt] + new.numel())
                        count[nt] += new.numel()
                        nodes[nt].append(new)
            node = {nt: torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
                    for nt, parts in nodes.items()}
            row, col, edge = {}, {}, {}
            for et in self.edge_types:
                parts = edges[et]
                if parts:
                    src = torch.cat([p[0] for p in parts])
                    dst = torch.cat([p[1] for p in parts])
                    eid = torch.cat([p[2] for p in parts])
                else:
                    src = dst = eid = torch.zeros(0, dtype=torch.long)
                row[et], col[et], edge[et] = self._slot[et[0]][src], self._slot[et[2]][dst], eid
            return HeteroSamplerOutput(
                node=node, row=row, col=col, edge=edge,
                metadata={nt: (seeds[nt].numel() if nt in seeds else 0) for nt in self.num_nodes})
        finally:  # leave the reusable buffers clean, whatever happened
            for nt, parts in nodes.items():
                for ids in parts:
                    self._slot[nt][ids] = -1
            for et, parts in expanded.items():
                for ids in parts:
                    self._done[et][ids] = False
            if hidden is not None and self._hidden.numel():
                self._hidden[hidden] = False

    def _draw(self, et: EdgeType, targets: Tensor, k: int,
              gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Up to ``k`` incoming ``et`` edges of each target: ``(src, dst, eid)`` global."""
        csc = self.csc[et]
        start = csc.ptr[targets]
        deg = csc.ptr[targets + 1] - start
        take = deg.clamp(max=k)
        owner = torch.repeat_interleave(torch.arange(targets.numel()), take)
        first = torch.cumsum(take, 0) - take
        offset = torch.arange(owner.numel()) - first[owner]
        big = deg[owner] > k  # targets with more than k neighbours draw uniformly instead
        if bool(big.any()):
            draws = torch.rand(int(big.sum()), generator=gen)
            offset[big] = (draws * deg[owner][big]).long().clamp_(max=deg[owner][big] - 1)
        pos = start[owner] + offset
        if bool(big.any()):  # repeats of a draw carry one message
            pos = torch.unique(pos)
            owner = torch.searchsorted(csc.ptr, pos, right=True) - 1  # back to target ids
            return csc.src[pos], owner, csc.eid[pos]
        return csc.src[pos], targets[owner], csc.eid[pos]

    # ------------------------------------------------------------------ PyG mini-batches
    def subgraph(self, seeds: dict[str, Tensor], hidden: Tensor | None = None) -> HeteroData:
        """:meth:`sample` as a :class:`~torch_geometric.data.HeteroData` mini-batch:
        ``data[nt].n_id`` (global ids, seeds first), ``data[nt].batch_size`` (seed count),
        ``data[et].edge_index`` (local) and ``data[et].e_id`` for every relation of the plan
        (empty where nothing was sampled), as PyG's loaders lay batches out."""
        out = self.sample(seeds, hidden)
        data = HeteroData()
        for nt, ids in out.node.items():
            data[nt].n_id = ids
            data[nt].num_nodes = ids.numel()
            data[nt].batch_size = out.metadata[nt]
        for et in self.edge_types:
            data[et].edge_index = torch.stack([out.row[et], out.col[et]])
            data[et].e_id = out.edge[et]
        return data


__all__ = ["FULL_GRAPH_HARD_LIMIT", "FULL_GRAPH_MAX_INTERACTIONS", "ModeChoice",
           "NeighborSampler", "SamplingPlan", "TRAINING_MODES", "choose_training_mode"]
