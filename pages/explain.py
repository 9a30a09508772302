"""Explain page: why the active model scores an item for a user, and what would change it."""

from __future__ import annotations

import contextlib

import matplotlib.pyplot as plt
import pandas as pd
import streamlit as st

from recscope_ui import ui
from recsys_core import viz
from recsys_core.views.explain import faithfulness_users, score_and_rank, what_if_ranks
from recsys_core.views.graph import (
    edge_mask_frame,
    explanation_subgraph,
    labelled_graph_html,
)

ATTENTION, SHAP, LIME, GNNEXPLAINER, WHAT_IF, FAITHFULNESS = (
    "Attention",
    "SHAP",
    "LIME",
    "GNNExplainer",
    "What-if",
    "Faithfulness",
)
GRAPH_METHODS = (ATTENTION, GNNEXPLAINER)  # need the graph-attention flagship


def render() -> None:
    st.title("Explain")
    ui.guarded(_body)


def _body() -> None:
    ws = ui.workspace()
    run = ui.require_model(ws)
    if run is None:
        return
    left, middle, right = st.columns([4, 2, 5])
    user = ui.user_picker(ws, "x-user", left)
    scope = middle.radio("Items", ["top 20", "any item"], key="x-scope", horizontal=True)
    recs = _recommendations(run, user)
    titles = ui.item_titles(ws)
    ranked = list(recs["item_id"])
    if scope == "top 20" and not ranked:
        st.info("The model has nothing left to recommend to this user; pick any item instead.")
        return
    if scope == "top 20":
        item = right.selectbox(
            "Item (the user's top 20)",
            ranked,
            key=f"x-item-{user}",
            format_func=lambda i: f"#{ranked.index(i) + 1} {titles[i]} ({i})",
        )
    else:
        item = right.selectbox(
            "Item (type to search)",
            list(titles.index),
            key="x-item-any",
            format_func=lambda i: f"{titles[i]} ({i})",
        )
    score, rank = score_and_rank(run.model, ws.dataset, user, item)
    flagship = _is_flagship(run.model)
    where = f"at #{rank}" if rank is not None else "(already in the user's history)"
    st.caption(
        f"Model **{ui.md(run.run_id)}** ranks **{ui.md(titles[item], 80)}** {where} "
        f"for user {ui.md(ui.shown_user(user))} (score {score:.4f})."
    )

    methods = [ATTENTION, SHAP, LIME, GNNEXPLAINER, WHAT_IF, FAITHFULNESS]
    default = ATTENTION if flagship else SHAP
    view = st.segmented_control(
        "View",
        methods,
        default=default,
        key="x-view",
        help="Attention and GNNExplainer read the graph network itself "
        "(flagship only); SHAP, LIME and what-if work for any model "
        "that can rescore an edited history.",
    )
    view = view or default
    if view in GRAPH_METHODS and not flagship:
        st.info(
            f"{view} explains the graph-attention flagship (gnn-llm); the active model is "
            f"{ui.md(run.model_name)}. Choose a gnn-llm run in the sidebar, or use SHAP, "
            "LIME or what-if."
        )
        return
    explain_ds = _train_view(ws)
    if view == ATTENTION:
        _section(_attention, ws, run, explain_ds, user, item)
    elif view == SHAP:
        _section(_shap, ws, run, explain_ds, user, item)
    elif view == LIME:
        _section(_lime, ws, run, explain_ds, user, item)
    elif view == GNNEXPLAINER:
        _section(_gnnexplainer, ws, run, explain_ds, user, item)
    elif view == WHAT_IF:
        _section(_what_if, ws, run, explain_ds, user, item)
    else:
        _section(_faithfulness, ws, run, explain_ds, user, item)


def _section(draw, *args) -> None:
    """Each view fails on its own: a message, never a traceback."""
    ui.guarded(lambda: draw(*args))


# ---------------------------------------------------------------------------------- helpers
def _recommendations(run, user: str) -> pd.DataFrame:
    return _cached(run, ("explain_recs", user), lambda: run.model.recommend(users=[user], k=20))


def _is_flagship(model) -> bool:
    from recsys_core.explain.engine import is_flagship

    return bool(is_flagship(model))


def _train_view(ws):
    """The dataset with only the training interactions (what the model saw as history)."""
    if "train_view" not in ws.cache:
        ws.cache["train_view"] = ws.dataset.subset_interactions(ws.train)
    return ws.cache["train_view"]


def _cached(run, key, compute, spinner: str | None = None):
    """``compute()`` once per run and ``key`` (with ``spinner`` shown while it runs)."""
    if key not in run.cache:
        with st.spinner(spinner) if spinner else contextlib.nullcontext():
            run.cache[key] = compute()
    return run.cache[key]


def _shown(ws, ds, explanation):
    """``(explanation, dataset)`` as this session may show them: in privacy mode every user id
    in both is the session's pseudonym (the dataset view is cached per workspace)."""
    pseudonymizer = ui.session_pseudonymizer()
    if pseudonymizer is None:
        return explanation, ds
    from recsys_core.privacy import pseudonymize_dataset, pseudonymize_explanation

    key = ("private_view", id(ds))
    if key not in ws.cache:
        ws.cache[key] = pseudonymize_dataset(ds, pseudonymizer)
    return pseudonymize_explanation(explanation, pseudonymizer), ws.cache[key]


def _rationale(explanation, ds) -> None:
    from recsys_core.explain.rationale import rationale

    st.info(ui.md(rationale(explanation, ds)), icon=":material/lightbulb:")


def _bar_and_column(explanation, title: str, key: str):
    """The contributions' bar chart in the left of two columns; returns the right one."""
    left, right = st.columns(2)
    with left:
        st.plotly_chart(viz.contributions_bar_fig(explanation.contributions, title=title), key=key)
    return right


def _contributions_table(explanation, name: str) -> None:
    frame = explanation.top()
    shown = frame[[c for c in ("kind", "label", "weight", "attention", "id") if c in frame]]
    ui.number_table(
        shown,
        ["weight"],
        height=280,
        column_config={"attention": st.column_config.NumberColumn(format="%.3f")},
    )
    ui.download_csv(
        f"Download {name} contributions (CSV)",
        shown,
        f"{name}_{explanation.user_id}_{explanation.item_id}.csv",
        key=f"x-dl-{name}",
    )


def _subgraph(
    ws, edges: pd.DataFrame, user_id: str, item_id: str, weight: str, top: int, key: str
) -> None:
    ds = ws.dataset
    user, item = int(ds.user_idx(user_id)[0]), int(ds.item_idx(item_id)[0])
    graph, scores = explanation_subgraph(
        edges,
        user,
        item,
        top=top,
        weight_column=weight,
        user_id=ui.shown_user(user_id),
        item_id=item_id,
    )
    html, _ = labelled_graph_html(
        graph, ds, center=f"item:{item}", edge_scores=scores, height_px=460
    )
    st.iframe(html, height=520, alt=f"Explanation subgraph ({key})")
    st.caption("Red edges carry the evidence; wider = more important. The star is the item.")


# ---------------------------------------------------------------------------------- views
def _attention(ws, run, ds, user: str, item: str) -> None:
    from recsys_core.explain.attention import attention_explanation

    exp = _cached(
        run, ("attention", user, item), lambda: attention_explanation(run.model, ds, user, item)
    )
    exp, shown_ds = _shown(ws, ds, exp)
    _rationale(exp, shown_ds)
    item_item = exp.details.get("item_item")
    path_note = (
        f" History items' weights include their item-item term (together "
        f"{float(item_item['contribution'].sum()):.4f} of the score)."
        if item_item is not None and len(item_item)
        else ""
    )
    st.caption(
        f"The score ({exp.score:.4f}) splits exactly into one term per attention-weighted "
        f"message into the user or the item, plus a base of {exp.base_value:.4f} "
        f"(biases and id embedding).{path_note}"
    )
    right = _bar_and_column(exp, "Contribution per source node", "x-att-bar")
    edges = exp.details.get("edges")
    with right:
        if edges is not None and len(edges):
            labels = {
                (r.node_type, int(r.index)): str(r.label)
                for r in exp.contributions.itertuples(index=False)
            }
            st.plotly_chart(viz.attention_heatmap_fig(edges, labels), key="x-att-heat")
    if edges is not None and len(edges):
        _subgraph(ws, edges, user, item, "contribution", 25, "attention")
    _contributions_table(exp, "attention")


def _text_features(ws, run) -> bool:
    """Text features are re-encoded with masked sentences: only when the model's item texts
    came from the shared encoder."""
    model_text = getattr(getattr(run.model, "module", None), "item_text", None)
    return bool(
        ws.cache.get("item_text_encoded")
        and model_text is not None
        and ws.item_text is not None
        and model_text.shape[1] == ws.item_text.shape[1]
    )


def _removal(ws, run, ds, user: str, item: str, method: str, spinner: str, caption, **options):
    """A SHAP or LIME view (cached per setting): the rationale, ``caption(explanation)``,
    shap's waterfall and the contributions table. The description's sentences are features
    when :func:`_text_features` allows."""
    from recsys_core.explain import explain
    from recsys_core.explain.plots import shap_figure

    use_text = _text_features(ws, run)
    exp = _cached(
        run,
        (method, user, item, use_text, *options.values()),
        lambda: explain(
            run.model,
            ds,
            user,
            item,
            method=method,
            max_text=3 if use_text else 0,
            encoder=ui.text_encoder() if use_text else None,
            **options,
        ),
        spinner,
    )
    exp, shown_ds = _shown(ws, ds, exp)
    _rationale(exp, shown_ds)
    st.caption(caption(exp))
    fig = shap_figure(exp, "waterfall")
    try:
        st.pyplot(fig)
    finally:
        plt.close(fig)
    _contributions_table(exp, method)


def _shap(ws, run, ds, user: str, item: str) -> None:
    permutations = st.columns([1, 2])[0].slider(
        "Permutations",
        1,
        5,
        2,
        key="x-shap-perms",
        help="Antithetic permutations of SHAP's permutation explainer: more is more precise "
        "and slower (each costs two forward passes per feature).",
    )
    _removal(
        ws,
        run,
        ds,
        user,
        item,
        "shap",
        "Computing SHAP values (a few seconds: one forward pass per coalition)…",
        lambda exp: (
            f"SHAP values (permutation explainer) over removable evidence: from the base value "
            f"{exp.base_value:.4f} (everything removed) to the score {exp.score:.4f}."
        ),
        npermutations=permutations,
    )


def _lime(ws, run, ds, user: str, item: str) -> None:
    from recsys_core.explain.lime_explain import DEFAULT_NUM_SAMPLES

    samples = st.columns([1, 2])[0].slider(
        "Samples",
        50,
        1000,
        DEFAULT_NUM_SAMPLES,
        step=50,
        key="x-lime-samples",
        help="Size of LIME's neighbourhood: each sample removes a random subset of the "
        "evidence and costs one forward pass. More is more stable and slower.",
    )

    def caption(exp) -> str:
        fit = exp.details["lime"]
        return (
            f"LIME weights: a linear model fitted to {fit['num_samples']} random removals of "
            f"the same evidence as SHAP, weighted by closeness to the full evidence. It predicts "
            f"{fit['intercept']:.4f} with everything removed and {fit['local_prediction']:.4f} "
            f"with everything kept (the model's score: {exp.score:.4f}); weighted "
            f"R² = {fit['r2']:.3f}."
        )

    _removal(
        ws,
        run,
        ds,
        user,
        item,
        "lime",
        "Fitting LIME's local surrogate (one forward pass per sample)…",
        caption,
        num_samples=samples,
    )


def _gnnexplainer(ws, run, ds, user: str, item: str) -> None:
    from recsys_core.explain.gnn_explainer import DEFAULT_EPOCHS, gnn_explainer_explanation

    exp = _cached(
        run,
        ("gnnexplainer", user, item),
        lambda: gnn_explainer_explanation(run.model, ds, user, item, epochs=DEFAULT_EPOCHS),
        f"Optimising GNNExplainer's edge mask ({DEFAULT_EPOCHS} steps)…",
    )
    exp, shown_ds = _shown(ws, ds, exp)
    _rationale(exp, shown_ds)
    masked = exp.details.get("masked_score")
    st.caption(
        "PyG's GNNExplainer learns a soft mask over the edges around the pair that keeps "
        "the score while using as few edges as possible; a node's importance is its "
        "edges' mask value (0 to 1)."
        + (
            f" Score with the learned mask: {masked:.4f} (full graph {exp.score:.4f})."
            if masked is not None
            else ""
        )
    )
    right = _bar_and_column(exp, "GNNExplainer importance per node", "x-gnn-bar")
    masks = exp.details.get("edge_masks")
    with right:
        if masks:
            edges = edge_mask_frame(masks, shown_ds)
            _subgraph(ws, edges, user, item, "mask", 25, "gnnexplainer")
    _contributions_table(exp, "gnnexplainer")


def _what_if(ws, run, ds, user: str, item: str) -> None:
    from recsys_core.explain.whatif import what_if

    history = ws.user_history(user)
    titles = ui.item_titles(ws)
    ids = list(history["item_id"])
    st.caption(
        "Remove items from the user's history and watch the score and rank of the "
        "selected item change. Nothing is retrained: the model is re-run on the edited "
        "history."
    )
    drop = st.multiselect(
        "History items to remove",
        ids,
        key=f"x-drop-{user}",
        format_func=lambda i: f"{titles[i]} ({i})",
    )
    result = what_if(run.model, ds, user, drop=drop, k=10, items=[item])
    row = result.scores.iloc[0]
    before_rank, after_rank = what_if_ranks(run.model, user, item, drop)
    c1, c2 = st.columns(2)
    c1.metric(
        "Score", f"{row['score_after']:.4f}", delta=f"{row['delta']:+.4f}", delta_color="normal"
    )
    c2.metric(
        "Rank",
        f"#{after_rank}",
        delta=f"{before_rank - after_rank:+d} places",
        delta_color="normal",
        help="Among items the user has not interacted with.",
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**Top 10 now**")
        ui.number_table(result.top_before, ["score"])
    with right:
        st.markdown("**Top 10 after the edit**")
        ui.number_table(result.top_after, ["score"])
    if drop:
        st.caption(f"{len(result.entered)} items entered the top 10, {len(result.left)} left.")
        ui.download_csv(
            "Download the edited top 10 (CSV)",
            result.top_after,
            f"what_if_{user}.csv",
            key="x-dl-whatif",
        )


def _faithfulness(ws, run, ds, user: str, item: str) -> None:
    from recsys_core.explain import faithfulness

    st.caption(
        "Deletion test: for each sampled user's top recommendation, remove the k history "
        "items an explanation ranks highest and measure how much the score drops, "
        "against removing k random history items. A faithful explanation's curve lies "
        "well above the random one. Nothing is retrained."
    )
    flagship = _is_flagship(run.model)
    methods = ["attention", "shap", "lime", "gnnexplainer"] if flagship else ["shap", "lime"]
    c1, c2, c3 = st.columns(3)
    chosen = c1.multiselect("Methods", methods, default=methods[:1], key="x-f-methods")
    n_users = c2.slider(
        "Users", 2, 30, 5, key="x-f-users", help="The selected user plus others sampled at random."
    )
    k = c3.slider("Items removed (k)", 1, 10, 3, key="x-f-k")
    if not chosen:
        st.info("Pick at least one method.")
        return
    sample = faithfulness_users(ws.train, user, n_users, k)
    if not sample:
        st.warning(f"No user has more than {k} history items; lower k.")
        return
    keys = {m: ("faithfulness", m, tuple(sample), k) for m in chosen}
    missing = [m for m in chosen if keys[m] not in run.cache]
    if missing:
        st.caption(
            f"Each user costs one explanation plus about {4 * k * 4} forward passes "
            f"(deletion and insertion curves, {k} sizes, 3 random draws): expect several "
            "seconds per user on a CPU."
        )
        if not st.button(
            f"Run the deletion test ({', '.join(missing)}, {len(sample)} users)",
            type="primary",
            key="x-f-run",
        ):
            return
        for method in missing:
            with st.spinner(f"Deletion test for {method} on {len(sample)} users…"):
                options = {
                    "shap": {"max_text": 0, "npermutations": 1},
                    "lime": {"max_text": 0, "num_samples": 100},
                }.get(method, {})
                run.cache[keys[method]] = faithfulness(
                    run.model,
                    ds,
                    method,
                    sample,
                    k=k,
                    n_random=3,
                    curves=True,
                    explain_options=options,
                )
    results = {m: run.cache[keys[m]] for m in chosen}
    summary = pd.DataFrame(
        [
            {
                "method": m,
                "users": r["users"],
                "skipped": r["skipped"],
                f"score drop, top {k}": r["mean_drop_top"],
                f"score drop, random {k}": r["mean_drop_random"],
                "ratio": r["ratio"],
                "seconds per explanation": r["mean_explain_seconds"],
            }
            for m, r in results.items()
        ]
    )
    curves = (
        ("deletion", "Deletion: mean score drop after removing k items", "x-f-del"),
        ("insertion", "Insertion: mean score keeping only k items", "x-f-ins"),
    )
    for column, (curve, title, key) in zip(st.columns(2), curves, strict=True):
        with column:
            st.plotly_chart(
                viz.deletion_curves_fig(
                    {m: r[curve] for m, r in results.items() if curve in r}, title
                ),
                key=key,
            )
    ui.number_table(
        summary, [c for c in summary.columns if c not in ("method", "users", "skipped")]
    )
    per_user = pd.concat(
        [r["per_user"].assign(method=m) for m, r in results.items()], ignore_index=True
    )
    ui.download_csv(
        "Download per-user results (CSV)", per_user, "faithfulness.csv", key="x-dl-faith"
    )


ui.run_page(render)
