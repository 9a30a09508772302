"""A :class:`~.content.ReportContent` as one self-contained HTML file.

The page opens offline: plotly.js is inlined once (:func:`plotly.offline.get_plotlyjs`), every
figure is a ``<div>`` plus an inline script that draws it, there is no remote script, style,
font or image, and a Content-Security-Policy forbids loading any. Every string from the data
(titles, ids, names, labels) is escaped: Jinja2 autoescapes the page, and text inside figures
goes through :func:`recsys_core.html_safety.plot_text`.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from jinja2 import Environment, select_autoescape

from ..html_safety import clean_text, plot_text
from .content import EMPTY_SLICE_TEXT, SLICES, ReportContent, is_missing

#: Plotly options of every figure: no logo, no link to an online editor, no remote maps.
PLOTLY_CONFIG = {"displaylogo": False, "topojsonURL": "",
                 "responsive": True}
#: The page may run its own inline scripts and styles and show inline images, nothing else.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; "
                           "style-src 'unsafe-inline'; img-src data: blob:; font-src data:")
#: Metrics shown with intervals in the metrics figure.
FIGURE_METRICS = ("recall", "ndcg")
_PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#9D755D")


def render_report(content: ReportContent) -> str:
    """The report as one HTML document (a string).

    Args:
        content (ReportContent): Output of :func:`~.content.report_content`.
    """
    from plotly.offline import get_plotlyjs

    figures = _Figures()
    view = _view(content, figures)
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _number
    template = env.from_string(TEMPLATE)
    return template.render(c=content, v=view, plotlyjs=get_plotlyjs(), csp=CONTENT_SECURITY_POLICY)


class _Figures:
    """Numbers figures and turns them into ``<div>`` + inline script (no plotly.js copy)."""

    def __init__(self) -> None:
        self.count = 0

    def html(self, fig: go.Figure) -> Any:
        from markupsafe import Markup

        self.count += 1
        fig.update_layout(template="plotly_white")
        return Markup(pio.to_html(fig, full_html=False, include_plotlyjs=False,
                                  config=PLOTLY_CONFIG, div_id=f"figure-{self.count}",
                                  default_width="100%"))


# ---------------------------------------------------------------------------- view model
def _view(content: ReportContent, figures: _Figures) -> dict[str, Any]:
    from ..viz import contributions_bar_fig, deletion_curves_fig, metric_bars_fig

    metrics_rows = []
    for result in content.results:
        rows = list(result.metrics.itertuples(index=False))
        hidden = _suppressed(content, [row.n_users for row in rows])
        for row, suppressed in zip(rows, hidden, strict=True):
            metrics_rows.append({"model": result.name, "role": result.role,
                                 "metric": f"{row.metric}@{content.k}",
                                 "value": None if suppressed else row.value,
                                 "low": None if suppressed else row.low,
                                 "high": None if suppressed else row.high,
                                 "n_users": row.n_users, "suppressed": suppressed})
    beyond = pd.DataFrame([{"model": r.name, **r.beyond} for r in content.results])
    slice_rows = []
    for result in content.results:
        for key, title in SLICES.items():
            s = result.slices.get(key) or {}
            n_users = s.get("n_users") or 0
            empty = n_users == 0 or is_missing(s.get("recall"))
            slice_rows.append({"model": result.name, "slice": title, "n_users": n_users,
                               "n_items": s.get("n_items"), "recall": s.get("recall"),
                               "ndcg": s.get("ndcg"), "empty": empty})
    for row, suppressed in zip(slice_rows, _suppressed(content, [r["n_users"] for r in slice_rows]),
                               strict=True):
        row["suppressed"] = suppressed and not row["empty"]  # empty: said as such
    shown_slices = [r for r in slice_rows if not r["empty"] and not r["suppressed"]]
    view: dict[str, Any] = {
        "metrics": metrics_rows,
        "metrics_figure": figures.html(_metrics_fig(content)) if content.results else None,
        "beyond": beyond.to_dict("records"),
        "beyond_figure": figures.html(metric_bars_fig(
            beyond.fillna(0.0), ["coverage", "popularity percentile"],
            "Catalogue coverage and popularity bias")) if len(beyond) else None,
        "slices": slice_rows,
        "slices_figure": figures.html(_slices_fig(shown_slices, content.k))
        if shown_slices else None,
        "empty_slice_text": EMPTY_SLICE_TEXT,
        "faithfulness": [
            {"method": m, **{k: r.get(k) for k in ("users", "skipped", "mean_drop_top",
                                                    "mean_drop_random", "ratio")}}
            for m, r in content.faithfulness.items()],
        "faithfulness_figure": figures.html(deletion_curves_fig(
            {m: r["deletion"] for m, r in content.faithfulness.items()
             if r.get("deletion") is not None},
            "Deletion: mean score drop after removing k history items"))
        if content.faithfulness else None,
        "examples": [],
    }
    for example in content.examples:
        explanations = []
        for method, frame in example.explanations.items():
            top = frame.reindex(frame["weight"].abs().sort_values(
                ascending=False, kind="stable").index).head(8)
            explanations.append({
                "method": method, "rows": top.to_dict("records"),
                "figure": figures.html(contributions_bar_fig(
                    frame, top=12, title=f"{method}: contributions to the top item's score")),
            })
        view["examples"].append({"user": example, "explanations": explanations})
    view["figure_count"] = figures.count
    return view


def _metrics_fig(content: ReportContent) -> go.Figure:
    """Bars with confidence-interval error bars: one group per metric, one bar per model."""
    fig = go.Figure()
    for j, result in enumerate(content.results):
        frame = result.metrics.set_index("metric").reindex(list(FIGURE_METRICS))
        if any(_suppressed(content, list(frame["n_users"]))):
            continue
        values = frame["value"].astype(float)
        fig.add_trace(go.Bar(
            name=plot_text(result.name, 40),
            x=[f"{m}@{content.k}" for m in FIGURE_METRICS],
            y=values,
            marker_color=_PALETTE[j % len(_PALETTE)],
            error_y=dict(type="data", symmetric=False,
                         array=(frame["high"].astype(float) - values).clip(lower=0),
                         arrayminus=(values - frame["low"].astype(float)).clip(lower=0)),
        ))
    fig.update_layout(barmode="group", height=360,
                      title=f"Metrics with {content.confidence:.0%} bootstrap intervals",
                      margin=dict(t=50, b=40, l=50, r=10), legend=dict(orientation="h", y=-0.2))
    return fig


def _slices_fig(rows: list[dict[str, Any]], k: int) -> go.Figure:
    fig = go.Figure()
    models = list(dict.fromkeys(r["model"] for r in rows))
    for j, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model]
        fig.add_trace(go.Bar(name=plot_text(model, 40), x=[r["slice"] for r in mine],
                             y=[r["recall"] for r in mine],
                             marker_color=_PALETTE[j % len(_PALETTE)]))
    fig.update_layout(barmode="group", height=320, title=f"Recall@{k} by slice",
                      margin=dict(t=50, b=40, l=50, r=10), legend=dict(orientation="h", y=-0.2))
    return fig


def _suppressed(content: ReportContent, user_counts: list[Any]) -> list[bool]:
    """Which groups privacy mode hides (:func:`recsys_core.privacy.suppress_small_groups`:
    fewer than ``content.min_group_users`` users, or an unknown count); none outside it."""
    if not content.privacy:
        return [False] * len(user_counts)
    from ..privacy import suppress_small_groups

    frame = pd.DataFrame({"n_users": pd.array(user_counts, dtype="Float64"),
                          "row": range(len(user_counts))})
    kept, _ = suppress_small_groups(frame, "n_users", content.min_group_users)
    shown = set(kept["row"])
    return [row not in shown for row in range(len(user_counts))]


def _number(value: Any, digits: int = 4) -> str:
    """A number for a table cell; missing values become a dash (never ``NaN``)."""
    if is_missing(value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return clean_text(value, 200)
    if math.isinf(number):
        return "∞"
    return f"{number:,.{digits}f}"


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>RecScope report: {{ c.title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 1.5rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { border-bottom: 2px solid #F58518; padding-bottom: 0.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 0.9rem; }
.privacy { background: #fff4e5; border: 1px solid #F58518; padding: 0.5rem 0.8rem; }
.rationale { background: #eef5fb; border-left: 4px solid #4C78A8; padding: 0.5rem 0.8rem; }
.example { border: 1px solid #ddd; border-radius: 6px; padding: 0.4rem 1rem; margin: 1rem 0; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.muted { color: #888; }
</style>
<script type="text/javascript">{{ plotlyjs | safe }}</script>
</head>
<body>
<h1>RecScope report: {{ c.title }}</h1>
<p class="note">Generated {{ c.generated }} by RecScope. Top-{{ c.k }} metrics; intervals are
{{ "%.0f" | format(c.confidence * 100) }}% per-user bootstrap intervals. Figures are interactive
(hover, zoom, click legend entries); this file needs no network.</p>
{% if c.privacy %}
<p class="privacy" id="privacy-note"><strong>Privacy mode.</strong> User ids are replaced by
salted pseudonyms (the salt is not stored anywhere) and any group of fewer than
{{ c.min_group_users }} users is suppressed. Item titles are shown (catalogue data).</p>
{% endif %}

<h2 id="data">Data</h2>
<table>
{% for label, value in c.data %}
<tr><th>{{ label }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table>
{% if c.skipped %}
<p class="note" id="skipped">Test rows left out:
{% for reason, count in c.skipped.items() %}{{ "{:,}".format(count) }} {{ reason | replace("_", " ") }}{% if not loop.last %}; {% endif %}{% endfor %}
(unknown users or items cannot be ranked; training interactions are never recommended).</p>
{% endif %}

<h2 id="model">Model and settings</h2>
<table>
<tr><th>model</th><td>{{ c.model.name }}</td></tr>
<tr><th>seed</th><td>{{ c.model.seed }}</td></tr>
<tr><th>saved</th><td>{{ c.model.created }}</td></tr>
{% if c.model.device %}<tr><th>device</th><td>{{ c.model.device }}</td></tr>{% endif %}
{% if c.model.fit_seconds is not none %}<tr><th>fit time</th><td>{{ c.model.fit_seconds | num(1) }} s</td></tr>{% endif %}
</table>
<details><summary>All settings ({{ c.model.settings | length }})</summary>
<table>{% for key, value in c.model.settings %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
</details>
<details><summary>Library versions</summary>
<table>{% for key, value in c.model.versions %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
</details>

<h2 id="metrics">Metrics against the baselines</h2>
<p class="note">Baselines are fitted on the run's training interactions and ranked on the same
test users. Every model ranks all items it has not seen in training.</p>
{% if v.metrics_figure %}{{ v.metrics_figure }}{% endif %}
<table id="metrics-table">
<tr><th>model</th><th>metric</th><th>value</th><th>{{ "%.0f" | format(c.confidence * 100) }}% interval</th><th>users</th></tr>
{% for r in v.metrics %}
<tr><td>{{ r.model }}{% if r.role == "run" %} <span class="muted">(this run)</span>{% endif %}</td><td>{{ r.metric }}</td>
{% if r.suppressed %}<td colspan="2">suppressed: fewer than {{ c.min_group_users }} users</td>
{% else %}<td class="num">{{ r.value | num }}</td><td class="num">{{ r.low | num }} – {{ r.high | num }}</td>{% endif %}
<td class="num">{{ r.n_users | num }}</td></tr>
{% endfor %}
</table>

<h2 id="beyond">Coverage and popularity bias</h2>
<p class="note">Coverage: share of the catalogue appearing in any top-{{ c.k }} list. Popularity
percentile: mean popularity percentile of the recommended items (0.5: as popular as a random
catalogue item; 1: always the most popular). Novelty: mean self-information of the recommended
items (higher: less popular).</p>
{% if v.beyond_figure %}{{ v.beyond_figure }}{% endif %}
<table id="beyond-table">
<tr><th>model</th><th>coverage</th><th>novelty</th><th>popularity percentile</th></tr>
{% for r in v.beyond %}
<tr><td>{{ r.model }}</td><td class="num">{{ r.coverage | num }}</td><td class="num">{{ r.novelty | num }}</td><td class="num">{{ r["popularity percentile"] | num }}</td></tr>
{% endfor %}
</table>

<h2 id="slices">Cold items and the long tail</h2>
<p class="note">Cold items have no training interaction (recommendable only from their text and
attributes); the long tail is every other item outside the most popular ones that hold 80% of
the training interactions. In each slice only its items are ranked, against the test
interactions with them.</p>
{% if v.slices_figure %}{{ v.slices_figure }}{% endif %}
<table id="slices-table">
<tr><th>model</th><th>slice</th><th>users</th><th>items</th><th>recall@{{ c.k }}</th><th>ndcg@{{ c.k }}</th></tr>
{% for r in v.slices %}
<tr><td>{{ r.model }}</td><td>{{ r.slice }}</td>
{% if r.empty %}<td colspan="4" class="empty-slice">{{ v.empty_slice_text }}</td>
{% elif r.suppressed %}<td colspan="4">suppressed: fewer than {{ c.min_group_users }} users</td>
{% else %}<td class="num">{{ r.n_users | num }}</td><td class="num">{{ r.n_items | num }}</td><td class="num">{{ r.recall | num }}</td><td class="num">{{ r.ndcg | num }}</td>{% endif %}
</tr>
{% endfor %}
</table>

<h2 id="faithfulness">Faithfulness of the explanations</h2>
<p class="note">{{ c.faithfulness_note }}</p>
{% if v.faithfulness %}
{% if v.faithfulness_figure %}{{ v.faithfulness_figure }}{% endif %}
<table id="faithfulness-table">
<tr><th>method</th><th>users</th><th>skipped</th><th>score drop, top k</th><th>score drop, random k</th><th>ratio</th></tr>
{% for r in v.faithfulness %}
<tr><td>{{ r.method }}</td><td class="num">{{ r.users | num }}</td><td class="num">{{ r.skipped | num }}</td><td class="num">{{ r.mean_drop_top | num }}</td><td class="num">{{ r.mean_drop_random | num }}</td><td class="num">{{ r.ratio | num(2) }}</td></tr>
{% endfor %}
</table>
{% endif %}

<h2 id="examples">Example users</h2>
{% if not v.examples %}<p class="note">No test user has enough history for an example.</p>{% endif %}
{% for e in v.examples %}
<div class="example">
<h3>User {{ e.user.shown_id }} <span class="muted">({{ e.user.history_size }} training interactions)</span></h3>
{% if e.user.rationale %}<p class="rationale">Why “{{ e.user.item_title }}” comes first: {{ e.user.rationale }}</p>{% endif %}
{% for note in e.user.notes %}<p class="note">{{ note }}</p>{% endfor %}
<div class="grid">
<div><strong>Recent history</strong>
<table>{% for r in e.user.history.to_dict("records") %}<tr><td>{{ r.title }}</td><td class="num">{{ r.rating | num(1) }}</td></tr>{% endfor %}</table></div>
<div><strong>Recommendations</strong>
<table><tr><th>#</th><th>title</th><th>score</th></tr>
{% for r in e.user.recommendations.to_dict("records") %}<tr><td class="num">{{ r["rank"] }}</td><td>{{ r.title }}{% if r.cold %} <span class="muted">(cold)</span>{% endif %}</td><td class="num">{{ r.score | num }}</td></tr>{% endfor %}
</table></div>
</div>
{% for x in e.explanations %}
<h4>{{ x.method }}</h4>
<div class="grid"><div>{{ x.figure }}</div>
<div><table><tr><th>evidence</th><th>kind</th><th>weight</th></tr>
{% for r in x.rows %}<tr><td>{{ r.label }}</td><td>{{ r.kind | replace("_", " ") }}</td><td class="num">{{ r.weight | num }}</td></tr>{% endfor %}
</table></div></div>
{% endfor %}
</div>
{% endfor %}
{% if c.notes %}
<h2 id="notes">Notes</h2>
<ul>{% for note in c.notes %}<li>{{ note }}</li>{% endfor %}</ul>
{% endif %}
</body>
</html>
"""
