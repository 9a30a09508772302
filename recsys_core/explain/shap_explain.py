"""SHAP explanations of one (user, item) score over interpretable, removable evidence.

The explained function maps a binary vector over *features* to the model's score with the
features that are 0 taken away, by a real forward pass (nothing is retrained):

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
chunks of whole sentences. SHAP values come from the estimator of
:class:`shap.PermutationExplainer` (:func:`permutation_shap_values`, its permutations drawn
from the explanation's own :class:`numpy.random.Generator`, not NumPy's global one)
(antithetic permutations), whose values add up exactly to ``score - base_value``, where
``base_value`` is the score with every feature removed.
"""

from __future__ import annotations

import copy
import re
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..dataset import DESCRIPTION_COL, ITEM_COL, Dataset
from ..rng import numpy_generator
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


@dataclass
class Feature:
    """One removable piece of evidence (or a group of them) in a SHAP game.

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


def import_shap():
    """Import :mod:`shap`, with numba's JIT off while its modules load (if not loaded yet).

    shap compiles a few numba helpers on first use, 10-20 s per process on a 2-core CPU,
    although here they only loop over a few hundred evaluations; as plain Python they cost
    milliseconds (``numba.config.DISABLE_JIT`` is read when the functions are decorated).
    """
    if "shap" in sys.modules:
        return sys.modules["shap"]
    import numba

    previous = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True
    try:
        import shap
    finally:
        numba.config.DISABLE_JIT = previous
    return shap


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


def shap_explanation(
    model,
    dataset: Dataset,
    user_id: str,
    item_id: str,
    max_history: int = 12,
    max_attributes: int = 5,
    max_neighbours: int = 3,
    max_text: int = 3,
    npermutations: int = 3,
    seed: int = 0,
    encoder=None,
) -> Explanation:
    """SHAP values of ``score(user, item)`` over removable evidence (see module docstring).

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
        npermutations (int): Antithetic permutations of the permutation explainer; the cost
            is ``npermutations * (2 * features + 1)`` forward passes. (default: :obj:`3`)
        seed (int): Seed of the permutations. (default: :obj:`0`)
        encoder (TextEncoder, optional): Encoder for masked texts; by default the model's
            own (the bundled all-MiniLM-L6-v2).

    Returns:
        Explanation: ``contributions`` of the individual features, ``other`` the grouped ones
        (``[{"kind", "label", "weight", "ids"}]``), ``details["shap"]`` the
        :class:`shap.Explanation` (for :mod:`~recsys_core.explain.plots`),
        ``details["features"]`` the feature table, ``details["evaluations"]`` and
        ``details["seconds"]``.

    Raises:
        UnknownIdError: Unknown user or item id.
        HistoryEditError: The model cannot rescore edited interactions (``mf``, ``pop``).
    """
    shap = import_shap()
    start = time.perf_counter()
    user = int(dataset.user_idx(str(user_id))[0])
    item = int(dataset.item_idx(str(item_id))[0])
    game = _FlagshipGame(model, dataset, user, item, encoder, max_text) if is_flagship(model) \
        else _HistoryGame(model, dataset, user, item)
    features = game.features(max_history, max_attributes, max_neighbours)
    num = len(features)
    full = np.ones((1, num))
    score = float(game(full)[0])
    if num == 0:
        return _explanation(user_id, item_id, score, score, features, np.zeros(0), None,
                            game, start)
    row_values, base = permutation_shap_values(game, num, max(1, npermutations),
                                               numpy_generator(seed))
    values = shap.Explanation(values=row_values, base_values=base, data=full[0],
                              feature_names=[f.label for f in features])
    return _explanation(user_id, item_id, score, base, features, row_values, values, game,
                        start)


def permutation_shap_values(
    game, num: int, npermutations: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Antithetic permutation estimate of the SHAP values of ``game`` (as
    :class:`shap.PermutationExplainer` computes them, with permutations drawn from ``rng``).

    For each random order of the features, the features are switched on one by one from
    all off to all on, then off again in the same order; each feature's value is the mean of
    the score changes it causes. The values add up exactly to ``game(all on) - game(all off)``.

    Args:
        game (callable): ``[n, num]`` binary masks -> ``[n]`` scores.
        num (int): Number of features (at least 1).
        npermutations (int): Random orders (each costs ``2 * num + 1`` evaluations).
        rng (numpy.random.Generator): Source of the orders.

    Returns:
        ``(values [num], base)``: the SHAP values and the all-off score.
    """
    values = np.zeros(num)
    base = 0.0
    for _ in range(npermutations):
        order = rng.permutation(num)
        masks = np.zeros((2 * num + 1, num))
        for step, feature in enumerate(order, start=1):
            masks[step:step + num, feature] = 1.0  # on from ``step``, off again num rows later
        outputs = np.asarray(game(masks), dtype=np.float64)
        changes = np.diff(outputs)
        values[order] += changes[:num] - changes[num:]
        base = float(outputs[0])
    return values / (2 * npermutations), base


def _explanation(user_id, item_id, score, base, features, values, shap_values, game, start):
    rows, other = [], []
    for feature, value in zip(features, values, strict=True):
        if feature.group:
            other.append({"kind": feature.kind, "label": feature.label, "weight": float(value),
                          "ids": [str(m) for m in feature.id.split("|")] if feature.id else []})
        else:
            rows.append({"kind": feature.kind, "id": feature.id, "label": feature.label,
                         "weight": float(value), "node_type": feature.node_type,
                         "index": feature.index})
    table = pd.DataFrame([{"kind": f.kind, "id": f.id, "label": f.label, "group": f.group,
                           "size": len(f.members), "shap_value": float(v)}
                          for f, v in zip(features, values, strict=True)])
    return Explanation(
        method="shap", user_id=str(user_id), item_id=str(item_id), score=score,
        base_value=base, contributions=contribution_frame(rows), other=other or None,
        details={"shap": shap_values, "features": table, "evaluations": game.evaluations,
                 "seconds": time.perf_counter() - start, **game.notes})


class _Game:
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


class _HistoryGame(_Game):
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


class _FlagshipGame(_Game):
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


__all__ = ["Feature", "shap_explanation", "split_sentences", "text_chunks"]
