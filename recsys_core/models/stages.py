"""The flagship's propagation as a program of stages.

A forward pass of :class:`~recsys_core.models.gnn_llm.GNNLLMModule` is a fixed sequence of
:class:`Stage` steps, each updating one node type from some of its incoming relations.
Numbering the node states after each stage gives *snapshots*: snapshot 0 holds the layer-0
inputs and snapshot ``p`` every node's state after stage ``p``, so a stage at position ``p``
reads its sources from snapshot ``p - 1`` and its targets from snapshot ``target``. The module
builds the program (:meth:`GNNLLMModule.stage_program`) and runs each stage
(:meth:`GNNLLMModule.run_stage`); its forward pass and the explanation engine
(:class:`~recsys_core.explain.engine.FlagshipEngine`) both execute that one program.
"""

from __future__ import annotations

from typing import NamedTuple

EdgeType = tuple[str, str, str]


class Stage(NamedTuple):
    """One step of the network: ``dst`` nodes updated from ``relations``.

    Attributes:
        layer (int): The layer the stage belongs to (1-based).
        dst (str): The node type it updates.
        relations (tuple): Edge types (into ``dst``) whose convolutions it sums, in order.
        target (int): Snapshot the target nodes' state is read from (attention queries).
        accumulate (bool): Add the output to that target state instead of replacing it.
    """

    layer: int
    dst: str
    relations: tuple[EdgeType, ...]
    target: int
    accumulate: bool


class StageProgram(NamedTuple):
    """A whole forward pass: its stages in order and, per layer ``l = 0..L``, the snapshot
    holding the states at the end of layer ``l`` (``layer_end[0] == 0``, the inputs)."""

    stages: list[Stage]
    layer_end: list[int]


__all__ = ["EdgeType", "Stage", "StageProgram"]
