"""Text-encoder throughput: texts/second for short item texts, and the cached re-run.

Encodes 2,000 short item texts ("Title (year). Genre: a, b.") with the bundled
all-MiniLM-L6-v2 at batch 64 on 2 CPU threads (the figure in ``../shared/BENCHMARK.md``, next to
the repository, is about 420 texts/s through sentence-transformers), then encodes them again
from the on-disk cache. Titles come from MovieLens-100K when ``--ml100k`` points at it (default:
``../shared/data/ml-100k`` relative to the repository root), else they are synthetic.

    python benchmarks/bench_text.py [--n 2000] [--batch-size 64] [--threads 2] [--no-compare]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from recsys_core.text import TextEncoder, default_model_path

REPO = Path(__file__).resolve().parents[1]
ML100K = (REPO / ".." / "shared" / "data" / "ml-100k").resolve()

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]
WORDS = ["night", "river", "star", "city", "shadow", "king", "summer", "ghost", "road", "heart",
         "storm", "secret", "garden", "machine", "island", "winter", "empire", "dream"]


def item_texts(n: int, ml100k: Path | None) -> tuple[list[str], str]:
    """``n`` distinct short texts in the shape of ``Dataset.item_texts()``'s default."""
    texts: list[str] = []
    source = "synthetic"
    if ml100k is not None and (ml100k / "u.item").is_file():
        source = "MovieLens-100K titles + genres"
        for line in (ml100k / "u.item").read_text(encoding="latin-1").splitlines():
            parts = line.split("|")
            genres = [g for g, flag in zip(ML100K_GENRES, parts[5:24], strict=True) if flag == "1"]
            texts.append(f"{parts[1]}. Genre: {', '.join(genres)}.")
    rng = np.random.default_rng(0)
    while len(texts) < n:  # synthetic titles fill up to n
        title = " ".join(rng.choice(WORDS, size=rng.integers(1, 4))).title()
        genres = rng.choice(ML100K_GENRES[1:], size=rng.integers(1, 4), replace=False)
        texts.append(f"{title} ({rng.integers(1930, 2024)}) #{len(texts)}. "
                     f"Genre: {', '.join(genres)}.")
    return texts[:n], source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ml100k", type=Path, default=ML100K,
                        help="MovieLens-100K folder (default: ../shared/data/ml-100k from the "
                             "repository root)")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the sentence-transformers reference run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts, source = item_texts(args.n, args.ml100k)
    print(f"{len(texts)} texts ({source}), mean {np.mean([len(t) for t in texts]):.0f} chars, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads, device {args.device}")

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        encoder = TextEncoder(batch_size=args.batch_size, device=args.device, cache_dir=cache)
        print(f"load: {time.perf_counter() - start:.2f} s")
        encoder.use_cache = False
        encoder.encode(texts[:args.batch_size])  # warm-up (allocator, kernels)
        encoder.use_cache = True

        start = time.perf_counter()
        vectors = encoder.encode(texts)
        cold = time.perf_counter() - start
        print(f"encode (empty cache): {cold:.2f} s = {len(texts) / cold:.0f} texts/s "
              f"({encoder.stats.batches - 1} batches)")

        encoder.reset_stats()
        start = time.perf_counter()
        cached = encoder.encode(texts)
        warm = time.perf_counter() - start
        assert torch.equal(vectors, cached) and encoder.stats.batches == 0
        print(f"encode (cached re-run): {warm:.3f} s = {len(texts) / warm:.0f} texts/s, "
              f"{encoder.stats.cache_hits} hits, {encoder.stats.batches} forward passes")

    if not args.no_compare:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            print("sentence-transformers not installed: no reference run")
            return
        model = SentenceTransformer(str(default_model_path()), device=args.device)
        model.encode(texts[:args.batch_size], batch_size=args.batch_size)
        start = time.perf_counter()
        reference = model.encode(texts, batch_size=args.batch_size, convert_to_tensor=True)
        took = time.perf_counter() - start
        gap = (reference.cpu() - vectors).abs().max().item()
        print(f"sentence-transformers reference: {took:.2f} s = {len(texts) / took:.0f} texts/s "
              f"(max abs difference to ours {gap:.1e})")
    print("BENCHMARK.md reference: ~420 texts/s (sentence-transformers, 2 threads, quiet CPU)")


if __name__ == "__main__":
    main()
