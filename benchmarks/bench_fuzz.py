"""A longer, randomised fuzzing campaign over ingestion, with timings.

Runs the generators of ``tests/test_fuzz_ingest.py`` for many more examples than the test suite
(random seeds, so every run explores new inputs), checks the same property on every call (a
clean :class:`~recsys_core.dataset.Dataset` whose counts add up, or a
:class:`~recsys_core.errors.DataError` naming the file), and prints how many calls ended which
way plus the time per call. A hostile file must never make ingestion slow: the slowest call is
printed with its input.

Target: no property failure, and no call over 2 s (the generated files are at most ~2 MB).

Usage::

    python benchmarks/bench_fuzz.py [--examples 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import statistics
import time
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]


def load_fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "tests" / "test_fuzz_ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000,
                        help="generated files per generator (default: 2000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    args = parser.parse_args()

    import recsys_core.graph  # noqa: F401  (items import it lazily; keep torch's import out of the timings)
    from recsys_core.errors import DataError

    fuzz = load_fuzz_module()
    outcomes: collections.Counter = collections.Counter()
    timings: list[float] = []
    slowest = (0.0, None)

    def timed(sources, **options):
        nonlocal slowest
        start = time.perf_counter()
        result = fuzz.ingest(sources, **options)  # raises on any property failure
        elapsed = time.perf_counter() - start
        timings.append(elapsed)
        if elapsed > slowest[0]:
            slowest = (elapsed, (sources, options))
        kind = ("DataError: " + str(result).split(": ", 1)[-1][:48]
                if isinstance(result, DataError) else "Dataset")
        outcomes[kind] += 1

    config = settings(max_examples=args.examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
    roles = st.sampled_from(["interactions", "interactions", "items", "user_edges", "users"])

    @config
    @given(role=roles, data=st.data())
    def campaign(role, data):
        if role == "interactions":
            timed({"interactions": data.draw(fuzz.delimited_file("interactions"))},
                  invalid_ratings=data.draw(st.sampled_from(["implicit", "drop"])))
        else:
            ids = ["i1", "i2", "i3"] if role == "items" else ["u1", "u2", "u3"]
            timed({"interactions": fuzz.GOOD_INTERACTIONS,
                   role: data.draw(fuzz.delimited_file(role, id_cells=ids))})

    if args.seed is not None:
        campaign = seed(args.seed)(campaign)
    started = time.perf_counter()
    campaign()
    total = time.perf_counter() - started

    print(f"{len(timings):,} generated files in {total:.1f} s "
          f"({len(timings) / total:.1f} files/s including generation)")
    if timings:
        ordered = sorted(timings)
        print(f"ingestion time per file: median {statistics.median(ordered) * 1e3:.1f} ms, "
              f"p95 {ordered[int(0.95 * (len(ordered) - 1))] * 1e3:.1f} ms, "
              f"max {ordered[-1] * 1e3:.1f} ms")
        sources, options = slowest[1]
        print(f"slowest input: {sources!r:.300} {options}")
    print("outcomes:")
    for kind, count in outcomes.most_common():
        print(f"  {count:6,}  {kind}")


if __name__ == "__main__":
    main()
