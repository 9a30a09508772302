"""The removable-evidence game that SHAP and LIME explain, built once for both.

The game maps a binary vector over *features* to the model's score with the features that
are 0 taken away, by a real forward pass (nothing is retrained):

* one feature per history item of the user: 0 removes that interaction (for the flagship
  both ``rates``/``rated_by`` edges, and the user's representation is recomputed from the
  edited graph; for ``ease``/``text-knn``/``lightgcn`` the edited history is rescored);
* (flagship) one feature per attribute value of the item: 0 removes the item's edges to
  that attribute node;
* (flagship) one feature per user-user neighbour of the user: 0 removes their edges;
* (flagship) one feature per chunk of the item's description (sentences): 0 deletes the
  chunk, the item's text is re-encoded by the same sentence encoder and replaces the
  item's frozen text embedding.

Caps keep one explanation within seconds on a 2-core CPU: the ``max_history`` history items
with the largest cheap prior (the attention decomposition for the flagship, the item-item
weight for EASE, text similarity for text-kNN, embedding similarity for LightGCN) are
separate features and the rest form one "other history items" feature; attributes and
neighbours are capped the same way; the description is merged into at most ``max_text``
chunks of whole sentences.

:func:`removal_game` builds the game of one (user, item) pair (:class:`EvidenceOptions` are
its caps); :func:`feature_explanation` turns one value per feature (SHAP values, LIME
weights) into an :class:`~recsys_core.explain.evidence.Explanation`.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import torch

from ..dataset import DESCRIPTION_COL, ITEM_COL, Dataset
from .engine import GraphEdit, flagship_engine, is_flagship
from .evidence import (
    ATTRIBUTE,
    HISTORY_ITEM,
    NEIGHBOUR,
    TEXT,
    Explanation,
    contribution_frame,
    node_evidence,
)
from .history import history_scorer

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


class EvidenceOptions(TypedDict, total=False):
    """The caps and text encoder of :func:`removal_game` as keyword arguments, each documented
    there. :func:`~recsys_core.explain.shap_explanation` and
    :func:`~recsys_core.explain.lime_explanation` take their own arguments, then
    ``**evidence: Unpack[EvidenceOptions]``, so the features they explain are set up and
    documented once."""

    max_history: int
    max_attributes: int
    max_neighbours: int
    max_text: int
    encoder: Any


@dataclass
class Feature:
    """One removable piece of evidence (or a group of them) in a SHAP or LIME game.

    Attributes:
        kind (str): ``history_item``, ``attribute``, ``neighbour`` or ``text``.
        id (str): Raw id (``""`` for a group).
        label (str): Human-readable name.
        members (list): What switching the feature off removes: item / user indices,
            ``(node_type, index)`` attribute nodes, or text chunk numbers.
        node_type (str): Graph node type of the members (``"text"`` for text).
        index (int): The member's node index (-1 for groups and text).
        group (bool): Whether the feature stands for several members.
    """

    kind: str
    id: str
    label: str
    members: list = field(default_factory=list)
    node_type: str = ""
    index: int = -1
    group: bool = False


def split_sentences(text: str) -> list[str]:
    """Sentences of a description (split after ``.``, ``!`` or ``?`` followed by space)."""
    text = " ".join(str(text).split())
    return [s for s in _SENTENCE_END.split(text) if s] if text else []


def text_chunks(sentences: list[str], max_chunks: int) -> list[str]:
    """Merge sentences into at most ``max_chunks`` contiguous chunks of similar length."""
    if len(sentences) <= max_chunks:
        return list(sentences)
    bounds = np.linspace(0, len(sentences), max_chunks + 1).round().astype(int)
    return [" ".join(sentences[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def removal_game(
    model,
    dataset: Dataset,
    user_id: str,
    item_id: str,
    max_history: int = 12,
    max_attributes: int = 5,
    max_neighbours: int = 3,
    max_text: int = 3,
    encoder=None,
) -> RemovalGame:
    """The removable-evidence game of ``score(user, item)`` (see module docstring), its
    features listed in :attr:`RemovalGame.feature_list`.

    Args:
        model (Recommender): A fitted ``gnn-llm`` (all feature kinds) or ``ease`` /
            ``text-knn`` / ``lightgcn`` model (history items only).
        dataset (Dataset): Its dataset.
        user_id (str): Raw user id.
        item_id (str): Raw item id.
        max_history (int): History items explained one by one; the rest form one group.
            (default: :obj:`12`)
        max_attributes (int): Attribute values explained one by one. (default: :obj:`5`)
        max_neighbours (int): User-user neighbours explained one by one. (default: :obj:`3`)
        max_text (int): Chunks the description is split into (0 disables text features).
            (default: :obj:`3`)
        encoder (TextEncoder, optional): Encoder for masked texts; by default the model's
            own (the bundled all-MiniLM-L6-v2).

    Raises:
        UnknownIdError: Unknown user or item id.
        HistoryEditError: The model cannot rescore edited interactions (``mf``, ``pop``).
    """
    user = int(dataset.user_idx(str(user_id))[0])
    item = int(dataset.item_idx(str(item_id))[0])
    game = FlagshipGame(model, dataset, user, item, encoder, max_text) if is_flagship(model) \
        else HistoryGame(model, dataset, user, item)
    game.features(max_history, max_attributes, max_neighbours)
    return game


def feature_explanation(method: str, user_id: str, item_id: str, game: RemovalGame,
                        base_value: float, values: np.ndarray, column: str, details: dict,
                        start: float) -> Explanation:
    """An :class:`Explanation` of one value per feature of ``game``.

    Individual features become ``contributions``; grouped ones ``other``
    (``[{"kind", "label", "weight", "ids"}]``). ``details`` is extended with ``features``
    (the feature table, the values in ``column``), ``evaluations``, ``seconds`` (since
    ``start``, a :func:`time.perf_counter` reading) and the game's notes.

    Args:
        method (str): ``"shap"`` or ``"lime"``.
        user_id (str): Raw user id.
        item_id (str): Raw item id.
        game (RemovalGame): The explained game; its all-on score is the explained score.
        base_value (float): The method's base value.
        values (numpy.ndarray): ``[features]`` values in feature order.
        column (str): Name of the values' column in the feature table.
        details (dict): The method's own details, first in ``Explanation.details``.
        start (float): When the explanation started.
    """
    rows, other = [], []
    for feature, value in zip(game.feature_list, values, strict=True):
        if feature.group:
            other.append({"kind": feature.kind, "label": feature.label, "weight": float(value),
                          "ids": [str(m) for m in feature.id.split("|")] if feature.id else []})
        else:
            rows.append({"kind": feature.kind, "id": feature.id, "label": feature.label,
                         "weight": float(value), "node_type": feature.node_type,
                         "index": feature.index})
    table = pd.DataFrame([{"kind": f.kind, "id": f.id, "label": f.label, "group": f.group,
                           "size": len(f.members), column: float(v)}
                          for f, v in zip(game.feature_list, values, strict=True)])
    return Explanation(
        method=method, user_id=str(user_id), item_id=str(item_id), score=game.score(),
        base_value=base_value, contributions=contribution_frame(rows), other=other or None,
        details={**details, "features": table, "evaluations": game.evaluations,
                 "seconds": time.perf_counter() - start, **game.notes})


class RemovalGame:
    """Binary masks over features -> scores, memoised (shap repeats the all-on/all-off rows)."""

    def __init__(self, model, dataset: Dataset, user: int, item: int) -> None:
        self.model, self.dataset, self.user, self.item = model, dataset, user, item
        self.feature_list: list[Feature] = []
        self.cache: dict[bytes, float] = {}
        self.evaluations = 0
        self.notes: dict = {}

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks) > 0.5
        todo = {}
        for mask in masks:
            key = mask.tobytes()
            if key not in self.cache and key not in todo:
                todo[key] = mask
        if todo:
            values = self.values(np.stack(list(todo.values())))
            self.cache.update(zip(todo, (float(v) for v in values), strict=True))
            self.evaluations += len(todo)
        return np.array([self.cache[mask.tobytes()] for mask in masks])

    def score(self) -> float:
        """The score with every feature on: the unedited pair's score."""
        return float(self(np.ones((1, len(self.feature_list))))[0])

    def features(self, max_history: int, max_attributes: int,
                 max_neighbours: int) -> list[Feature]:
        """Set up (and return) :attr:`feature_list` within the caps."""
        raise NotImplementedError

    def values(self, masks: np.ndarray) -> np.ndarray:
        """Scores for distinct masks (one row each)."""
        raise NotImplementedError

    def off(self, mask: np.ndarray, kind: str) -> list:
        return [m for f, on in zip(self.feature_list, mask, strict=True)
                if not on and f.kind == kind
                for m in f.members]

    def history_features(self, history: np.ndarray, prior: np.ndarray, cap: int,
                         labels: dict[int, tuple[str, str, str]]) -> list[Feature]:
        order = np.argsort(-np.abs(prior), kind="stable")
        if len(history) <= cap + 1:
            order = order[:len(history)]
            rest = np.zeros(0, dtype=np.int64)
        else:
            rest = history[order[cap:]]
            order = order[:cap]
        features = []
        for j in history[order]:
            kind, raw, label = labels[int(j)]
            features.append(Feature(kind, raw, label, [int(j)], "item", int(j)))
        if len(rest):
            ids = "|".join(str(self.dataset.item_ids[j]) for j in rest)
            features.append(Feature(HISTORY_ITEM, ids, f"{len(rest)} other history items",
                                    [int(j) for j in rest], "item", -1, group=True))
        return features


class HistoryGame(RemovalGame):
    """History-item features for models rescored through a :class:`HistoryScorer`."""

    def __init__(self, model, dataset, user, item) -> None:
        super().__init__(model, dataset, user, item)
        self.scorer = history_scorer(model)

    def features(self, max_history, max_attributes, max_neighbours) -> list[Feature]:
        history = self.scorer.history(self.user)
        labels = {int(j): node_evidence(self.dataset, {}, "item", j, frozenset(history.tolist()))
                  for j in history}
        self.feature_list = self.history_features(history, self._prior(history), max_history,
                                                  labels)
        return self.feature_list

    def _prior(self, history: np.ndarray) -> np.ndarray:
        model, item = self.model, self.item
        if model.name == "ease":
            pos = model._active_pos
            rows, col = pos[history], pos[item]
            out = np.zeros(len(history))
            if col >= 0:
                ok = rows >= 0
                out[ok] = model.weights.numpy()[rows[ok], col]
            return out
        if model.name == "text-knn":
            emb = model.item_embeddings.numpy()
            return emb[history] @ emb[item]
        _, item_emb = model.embeddings()
        return (item_emb[history] @ item_emb[item]).numpy()

    def values(self, masks):
        return np.array([self.scorer.scores(self.user, [self.item],
                                            drop=self.off(mask, HISTORY_ITEM))[0]
                         for mask in masks])


class FlagshipGame(RemovalGame):
    """History items, attributes, neighbours and description chunks of the flagship."""

    def __init__(self, model, dataset, user, item, encoder, max_text) -> None:
        super().__init__(model, dataset, user, item)
        self.engine = flagship_engine(model)
        self.max_text = max_text
        self.encoder = encoder
        self.chunks: list[str] = []
        self.text_cache: dict[tuple[int, ...], torch.Tensor] = {}

    def features(self, max_history, max_attributes, max_neighbours) -> list[Feature]:
        from .attention import decompose

        engine, dataset, user, item = self.engine, self.dataset, self.user, self.item
        history = engine.history(user)
        history_set = frozenset(history.tolist())
        attribute_nodes = engine.attribute_nodes
        prior = {}
        if getattr(self.model, "conv", "gat") in ("gat", "gatv2"):
            edges = decompose(engine, user, item)["edges"]
            first_head = edges[edges["head"] == 0]
            prior = (first_head.groupby(["source_type", "source_index"])["contribution"]
                     .sum().to_dict())
        if engine.item_item is not None:  # each history item's exact item-item term
            terms = engine.item_item.pair_weights(torch.from_numpy(history),
                                                  torch.tensor([item]))[:, 0]
            for j, term in zip(history.tolist(), terms.tolist(), strict=True):
                prior[("item", j)] = prior.get(("item", j), 0.0) + term
        labels = {int(j): node_evidence(dataset, attribute_nodes, "item", j, history_set)
                  for j in history}
        features = self.history_features(
            history, np.array([prior.get(("item", int(j)), 0.0) for j in history]),
            max_history, labels)

        attributes = [(et[2], int(a)) for et in engine.edges
                      if et[0] == "item" and et[2] in attribute_nodes
                      for a in engine.out_neighbours(et, item)]
        attributes = sorted(set(attributes), key=lambda a: -abs(prior.get(a, 0.0)))
        for node_type, index in attributes[:max_attributes]:
            kind, raw, label = node_evidence(dataset, attribute_nodes, node_type, index,
                                             history_set)
            features.append(Feature(kind, raw, label, [(node_type, index)], node_type, index))
        rest = attributes[max_attributes:]
        if rest:
            ids = "|".join(node_evidence(dataset, attribute_nodes, nt, a, history_set)[1]
                           for nt, a in rest)
            features.append(Feature(ATTRIBUTE, ids, f"{len(rest)} other attribute values",
                                    list(rest), "attribute", -1, group=True))

        neighbours = sorted({int(v) for et in engine.edges
                             if et[0] == "user" and et[2] == "user"
                             for v in engine.out_neighbours(et, user)} - {user},
                            key=lambda v: -abs(prior.get(("user", v), 0.0)))
        for v in neighbours[:max_neighbours]:
            kind, raw, label = node_evidence(dataset, attribute_nodes, "user", v, history_set)
            features.append(Feature(NEIGHBOUR, raw, label, [v], "user", v))
        rest_users = neighbours[max_neighbours:]
        if rest_users:
            ids = "|".join(str(dataset.user_ids[v]) for v in rest_users)
            features.append(Feature(NEIGHBOUR, ids, f"{len(rest_users)} other neighbours",
                                    list(rest_users), "user", -1, group=True))

        features.extend(self._text_features())
        self.feature_list = features
        return features

    # ------------------------------------------------------------------ text
    def _text_features(self) -> list[Feature]:
        if self.max_text <= 0 or DESCRIPTION_COL not in self.dataset.items:
            return []
        description = str(self.dataset.items[DESCRIPTION_COL].fillna("").iat[self.item])
        self.chunks = text_chunks(split_sentences(description), self.max_text)
        if not self.chunks:
            return []
        self.encoder = self._encoder()
        full = self._encode([self._text(tuple(range(len(self.chunks))))])[0]
        stored = self.engine.module.item_text[self.item].float()
        similarity = float(torch.nn.functional.cosine_similarity(full, stored, dim=0))
        if similarity < 0.999:
            # The run was trained with another encoder or template: masked texts would not be
            # comparable with the stored embedding, so the text is left out of the game.
            self.notes["text_note"] = (f"text features skipped: re-encoding the item's text does "
                                       f"not reproduce its stored embedding (cosine "
                                       f"{similarity:.3f}); was another text encoder used?")
            self.chunks = []
            return []
        self.text_cache[tuple(range(len(self.chunks)))] = self.engine.module.item_text[self.item]
        return [Feature(TEXT, f"sentence:{k}", chunk, [k], "text", -1)
                for k, chunk in enumerate(self.chunks)]

    def _encoder(self):
        encoder = self.encoder or getattr(self.model, "encoder", None)
        if encoder is None:
            from ..text import default_encoder

            encoder = default_encoder()
        # Masked texts are throw-away: keep them out of the shared on-disk embedding cache.
        private = copy.copy(encoder)
        private.use_cache = False
        return private

    def _text(self, kept: tuple[int, ...]) -> str:
        row = self.dataset.items.iloc[[self.item]].copy()
        row[DESCRIPTION_COL] = " ".join(self.chunks[k] for k in kept)
        one = Dataset(interactions=pd.DataFrame({"user_id": pd.Series([], dtype=str),
                                                 ITEM_COL: pd.Series([], dtype=str)}),
                      items=row.reset_index(drop=True),
                      attribute_columns=list(self.dataset.attribute_columns))
        template = getattr(self.model, "template", None)
        return (one.item_texts(template) if template else one.item_texts())[0]

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return self.encoder.encode(texts).float()

    def _encode_variants(self, masks: np.ndarray) -> None:
        """Encode, in one batch, the description variants these masks need."""
        if not self.chunks:
            return
        missing = sorted({self._kept(mask) for mask in masks} - set(self.text_cache))
        if missing:
            texts = [self._text(kept) for kept in missing]
            for kept, vector in zip(missing, self._encode(texts), strict=True):
                self.text_cache[kept] = vector

    def _kept(self, mask: np.ndarray) -> tuple[int, ...]:
        return tuple(f.members[0] for f, on in zip(self.feature_list, mask, strict=True)
                     if on and f.kind == TEXT)

    def values(self, masks):
        self._encode_variants(masks)
        return self.engine.scores_many(self.user, [self.item],
                                       [self._edit(mask) for mask in masks])[:, 0]

    def _edit(self, mask: np.ndarray) -> GraphEdit:
        engine = self.engine
        edit = engine.history_edit(self.user, drop=self.off(mask, HISTORY_ITEM))
        attributes = self.off(mask, ATTRIBUTE)
        if attributes:
            edit = edit.merge(engine.attribute_edit(self.item, attributes))
        neighbours = self.off(mask, NEIGHBOUR)
        if neighbours:
            edit = edit.merge(engine.neighbour_edit(self.user, neighbours))
        if self.chunks:
            kept = self._kept(mask)
            if len(kept) < len(self.chunks):
                edit = edit.merge(GraphEdit(item_text={self.item: self.text_cache[kept]}))
        return edit


__all__ = ["EvidenceOptions", "Feature", "FlagshipGame", "HistoryGame", "RemovalGame",
           "feature_explanation", "removal_game", "split_sentences", "text_chunks"]
