"""``python -m recsys_core explain``: why a saved run scores an item for a user (JSON).

Prints ``{"method", "user", "item", "score", "base_value", "contributions": [{"kind", "id",
"label", "weight"}, ...], "other" (only when evidence was grouped), "rationale"}``. ``kind`` is
``history_item`` (``id`` = raw item id, ``label`` = title), ``attribute`` (``id`` =
``<attribute>:<value>``), ``text`` or ``neighbour`` (raw user or item id). ``attention`` and
``gnnexplainer`` need the flagship (``gnn-llm``); ``shap`` and ``lime`` also explain ``ease``,
``text-knn`` and ``lightgcn`` runs by their history items.

With ``--privacy`` every user id in the output (the explained user, neighbour users, the
rationale) is a salted pseudonym (``u_`` + 16 hex digits): the salt is
``RECSCOPE_PRIVACY_SALT`` when set (the same pseudonyms as ``recommend --privacy`` with that
salt), else fresh for this process. Item ids and titles are kept.
"""

from __future__ import annotations

import argparse
import json

from ..errors import DataError
from .options import add_run_and_user


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="explain one (user, item) score of a saved run (JSON)",
        description="Explain why a saved run gives an item its score for a user: the evidence "
                    "(history items, attribute values, description sentences, neighbours) with "
                    "signed weights, plus a one-sentence rationale, printed as JSON.")
    add_run_and_user(parser)
    parser.add_argument("--item", required=True, metavar="I", help="raw item id")
    parser.add_argument("--method", choices=["attention", "shap", "lime", "gnnexplainer"],
                        default="attention", help="explanation method (default: attention)")
    parser.add_argument("--top", type=int, default=10, metavar="N",
                        help="contributions printed, largest absolute weight first (default: 10)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of SHAP's permutations / LIME's neighbourhood / "
                             "GNNExplainer's masks (default: 0)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="LIME's neighbourhood size, one forward pass each (default: 200)")
    parser.add_argument("--privacy", action="store_true",
                        help="print salted pseudonyms instead of user ids (salt: "
                             "RECSCOPE_PRIVACY_SALT if set, else fresh for this run; see "
                             "docs/SECURITY.md)")
    # Explanations run many small tensor operations, which lose more to thread hand-offs
    # (badly so on a busy machine) than they gain from a second thread: one thread unless
    # RECSCOPE_THREADS says otherwise (read once, at start-up, by the CLI's main).
    parser.set_defaults(run=run, threads=1)


def run(args: argparse.Namespace) -> int:
    from ..explain import explain, rationale
    from ..run import load_run

    if args.top < 1:
        raise DataError(f"--top must be at least 1, got {args.top}.")
    if args.samples is not None and (args.method != "lime" or args.samples < 2):
        raise DataError("--samples is LIME's neighbourhood size: use it with --method lime, "
                        f"and at least 2 (got {args.samples}).")
    pseudonymizer = None
    if args.privacy:
        from ..privacy import Pseudonymizer

        pseudonymizer = Pseudonymizer.from_environment()  # a bad salt fails before any work
    model, dataset, _ = load_run(args.run_dir)
    options = {"seed": args.seed} if args.method in ("shap", "lime", "gnnexplainer") else {}
    if args.samples is not None:
        options["num_samples"] = args.samples
    result = explain(model, dataset, args.user, args.item, method=args.method, **options)
    if pseudonymizer is not None:
        from ..privacy import pseudonymize_dataset, pseudonymize_explanation

        result = pseudonymize_explanation(result, pseudonymizer)
        dataset = pseudonymize_dataset(dataset, pseudonymizer)  # the rationale names users
    payload = result.to_dict(top=args.top, rationale=rationale(result, dataset))
    print(json.dumps(payload, indent=2, ensure_ascii=False))
    return 0
