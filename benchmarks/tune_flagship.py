"""MovieLens-100K figures for the trainable recommenders (protocol: /work/shared/BENCHMARK.md).

Prints Recall@20 / NDCG@20 on the random per-user split, cold-start Recall@20 on held-out items,
fit seconds and peak memory for EASE (reference), text kNN (reference), MF, LightGCN and the
flagship ``gnn-llm``. Every choice of defaults was made on the validation split; the test split
is only printed.

Usage::

    python benchmarks/tune_flagship.py --data /work/shared/data/ml-100k --models ease,gnn-llm
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_core.dataset import ITEM_IDX, USER_IDX, Dataset  # noqa: E402

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]


# ---------------------------------------------------------------------------------- data
def load_ml100k(root: str | Path) -> Dataset:
    """MovieLens-100K as a :class:`Dataset` (every rating is a positive; one genre column)."""
    root = Path(root)
    inter = pd.read_csv(root / "u.data", sep="\t", header=None,
                        names=["user_id", "item_id", "rating", "timestamp"])
    inter = inter.drop_duplicates(["user_id", "item_id"])
    inter["user_id"] = inter["user_id"].astype(str)
    inter["item_id"] = inter["item_id"].astype(str)
    raw = pd.read_csv(root / "u.item", sep="|", header=None, encoding="latin-1")
    flags = raw.iloc[:, 5:24].to_numpy().astype(bool)
    items = pd.DataFrame({
        "item_id": raw[0].astype(str),
        "title": raw[1].astype(str),
        "description": "",
        "genre": [[g for g, f in zip(GENRES, row) if f] for row in flags],
    })
    return Dataset(inter, items, attribute_columns=["genre"], name="ml-100k")


def split_protocol(ds: Dataset, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-user random 80/10/10 split of BENCHMARK.md (users with >= 5 interactions)."""
    inter = ds.interactions
    # Users in id order; each user's interactions in file order (reproduces the peer figures).
    inter = inter.assign(_u=inter["user_id"].astype(int))
    inter = inter.sort_values("_u", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    parts = {"train": [], "valid": [], "test": []}
    for _, rows in inter.groupby("_u", sort=True):
        n = len(rows)
        if n < 5:
            continue
        perm = rng.permutation(n)
        n_test = max(1, round(0.1 * n))
        n_valid = max(1, round(0.1 * n))
        idx = rows.index.to_numpy()[perm]
        parts["test"].append(idx[:n_test])
        parts["valid"].append(idx[n_test:n_test + n_valid])
        parts["train"].append(idx[n_test + n_valid:])
    cols = [c for c in inter.columns if not c.startswith("_")]
    return tuple(inter.loc[np.concatenate(parts[k]), cols].reset_index(drop=True)
                 for k in ("train", "valid", "test"))


def cold_split(ds: Dataset, seed: int = 7, fraction: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Hold out ``fraction`` of the items entirely: (train, test, held-out item indices)."""
    rng = np.random.default_rng(seed)
    n_items = ds.num_items
    held = np.sort(rng.choice(n_items, size=round(fraction * n_items), replace=False))
    inter = ds.interactions
    mask = np.isin(inter[ITEM_IDX].to_numpy(), held)
    return inter[~mask].reset_index(drop=True), inter[mask].reset_index(drop=True), held


# ---------------------------------------------------------------------------------- metrics
def recall_ndcg(scores: np.ndarray, seen: sp.csr_matrix, test: pd.DataFrame, users: np.ndarray,
                k: int = 20, candidates: np.ndarray | None = None) -> tuple[float, float]:
    """Mean Recall@k / NDCG@k over ``users`` (rows of ``scores``) against ``test``."""
    scores = scores.astype(np.float64, copy=True)
    if candidates is None:
        rows, cols = seen[users].nonzero()
        scores[rows, cols] = -np.inf
        cand = np.arange(scores.shape[1])
    else:
        cand = candidates
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_items = cand[top]
    truth = test.groupby(USER_IDX)[ITEM_IDX].apply(set).to_dict()
    recalls, ndcgs = [], []
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for row, u in enumerate(users):
        t = truth.get(u)
        if not t:
            continue
        hits = np.fromiter((i in t for i in top_items[row]), dtype=bool, count=top_items.shape[1])
        recalls.append(hits.sum() / len(t))
        ideal = discounts[:min(len(t), k)].sum()
        ndcgs.append((hits * discounts[:len(hits)]).sum() / ideal)
    return float(np.mean(recalls)), float(np.mean(ndcgs))


def binary_matrix(frame: pd.DataFrame, ds: Dataset) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(frame), np.float64), (frame[USER_IDX], frame[ITEM_IDX])),
                      shape=(ds.num_users, ds.num_items))
    m.data[:] = 1.0
    return m


# ---------------------------------------------------------------------------------- references
def ease_scores(x: sp.csr_matrix, lam: float = 500.0) -> np.ndarray:
    """EASE (Steck 2019): B = I - P / diag(P), P = (X^T X + lambda I)^-1, scores X B."""
    g = (x.T @ x).toarray()
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return np.asarray(x @ b)


def text_knn_scores(x: sp.csr_matrix, emb: np.ndarray) -> np.ndarray:
    """User profile = mean text embedding of the user's items; cosine to every item."""
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    deg = np.maximum(np.asarray(x.sum(1)).ravel(), 1)
    prof = (x @ emb) / deg[:, None]
    prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
    return prof @ emb.T


def item_text_embeddings(ds: Dataset, cache: Path | None) -> torch.Tensor:
    """MiniLM embeddings of ``ds.item_texts()`` (recsys_core.text caches them on disk)."""
    from recsys_core.text import encode_items

    return encode_items(ds, cache_dir=None if cache is None else str(cache))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


# ---------------------------------------------------------------------------------- runs
def run_model(name: str, ds: Dataset, fit_frame: pd.DataFrame, valid: pd.DataFrame | None,
              text: torch.Tensor, params: dict) -> tuple[object, float, dict]:
    from recsys_core.models.gnn_llm import GNNLLMRecommender
    from recsys_core.models.lightgcn import LightGCNRecommender
    from recsys_core.models.mf import MFRecommender

    cls = {"mf": MFRecommender, "lightgcn": LightGCNRecommender, "gnn-llm": GNNLLMRecommender}[name]
    model = cls(**params)
    start = time.perf_counter()
    kwargs = {"item_text_embeddings": text} if name == "gnn-llm" else {}
    model.fit(ds, fit_frame, valid, **kwargs)
    seconds = time.perf_counter() - start
    return model, seconds, getattr(model, "train_result", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/ml-100k")
    parser.add_argument("--models", default="ease,text-knn,gnn-llm")
    parser.add_argument("--params", default="{}", help="JSON constructor overrides for the trained models")
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--cold", action="store_true", help="also run the cold-start protocol")
    parser.add_argument("--valid-only", action="store_true",
                        help="tuning mode: fit on train, report on the protocol's valid split")
    parser.add_argument("--cache", default="/tmp/recscope_text_cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    ds = load_ml100k(args.data)
    train, valid, test = split_protocol(ds, args.split_seed)
    if args.valid_only:  # never look at test while choosing defaults
        fit_frame, target = train, valid
    else:
        fit_frame, target = pd.concat([train, valid], ignore_index=True), test
    seen = binary_matrix(fit_frame, ds)
    users = np.sort(target[USER_IDX].unique())
    text = item_text_embeddings(ds, Path(args.cache))
    params = json.loads(args.params)
    rows = []
    for name in args.models.split(","):
        start = time.perf_counter()
        if name == "ease":
            scores = ease_scores(seen)[users]
        elif name == "text-knn":
            scores = text_knn_scores(seen, text.numpy())[users]
        else:
            model, _, _ = run_model(name, ds, fit_frame, None, text, params.get(name, params))
            scores = model.score(users)
        seconds = time.perf_counter() - start
        rec, ndcg = recall_ndcg(scores, seen, target, users)
        row = {"model": name, "recall@20": round(rec, 4), "ndcg@20": round(ndcg, 4),
               "fit_s": round(seconds, 1), "peak_rss_gb": round(peak_rss_gb(), 2)}
        if args.cold and name != "ease":
            row["cold_recall@20"] = round(cold_start_recall(name, ds, text, params), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return 0


def cold_start_recall(name: str, ds: Dataset, text: torch.Tensor, params: dict) -> float:
    train, test, held = cold_split(ds)
    seen = binary_matrix(train, ds)
    users = np.sort(test[USER_IDX].unique())
    if name == "text-knn":
        scores = text_knn_scores(seen, text.numpy())[users][:, held]
    else:
        model, _, _ = run_model(name, ds, train, None, text, params.get(name, params))
        scores = model.score(users, held)
    rec, _ = recall_ndcg(scores, seen, test, users, candidates=held)
    return rec


if __name__ == "__main__":
    raise SystemExit(main())
