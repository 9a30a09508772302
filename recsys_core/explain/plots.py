"""Matplotlib figures of explanations (returned, never shown; the caller closes them).

SHAP explanations are drawn with shap's own ``waterfall`` and ``bar`` plots into an explicit
figure; any explanation's contributions can be drawn as a signed horizontal bar chart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure

from .evidence import Explanation

# shap's waterfall draws on pyplot's *current* figure: serialise those calls across threads
# (Streamlit serves sessions from several threads).
_PYPLOT_LOCK = threading.Lock()

#: The shap plots :func:`shap_figure` draws.
SHAP_PLOTS = ("waterfall", "bar")

_KIND_COLOURS = {"history_item": "#1f77b4", "attribute": "#2ca02c", "text": "#9467bd",
                 "neighbour": "#ff7f0e"}


def shap_figure(explanation: Explanation, plot: str = "waterfall",
                max_display: int = 12) -> Figure:
    """One of shap's own plots of a SHAP explanation: ``"waterfall"``
    (``shap.plots.waterfall``, from the base value to the score) or ``"bar"``
    (``shap.plots.bar``, the signed values, largest first).

    Args:
        explanation (Explanation): Output of :func:`~recsys_core.explain.shap_explanation`
            (or of LIME, whose weights it also holds as SHAP values).
        plot (str): ``"waterfall"`` or ``"bar"``. (default: :obj:`"waterfall"`)
        max_display (int): Features shown; the rest are summed into one bar.
            (default: :obj:`12`)

    Raises:
        ValueError: The explanation has no SHAP values, or ``plot`` is neither name.
    """
    if plot not in SHAP_PLOTS:
        raise ValueError(f"plot must be one of {SHAP_PLOTS}, got {plot!r}.")
    shap, values = _shap_values(explanation)
    if plot == "waterfall":
        return _pyplot_figure(
            lambda fig: shap.plots.waterfall(values, max_display=max_display, show=False))
    return _pyplot_figure(
        lambda fig: shap.plots.bar(values, max_display=max_display, ax=fig.add_subplot(),
                                   show=False),
        figsize=(8, 0.45 * min(max_display, len(values.values)) + 1.5))


def _pyplot_figure(draw: Callable[[Figure], object],
                   figsize: tuple[float, float] | None = None) -> Figure:
    """Run ``draw`` on a new pyplot figure (shap's plots draw on pyplot's current one), under
    the lock, and return the figure detached from pyplot's registry (it stays usable)."""
    import matplotlib.pyplot as plt

    with _PYPLOT_LOCK:
        fig = plt.figure(figsize=figsize)
        try:
            draw(fig)
            fig = plt.gcf()
        finally:
            plt.close(fig)
    return fig


def contributions_figure(explanation: Explanation, top: int = 12) -> Figure:
    """Signed horizontal bars of the ``top`` contributions by absolute weight, coloured by kind.

    Works for every method (attention, SHAP, GNNExplainer).

    Args:
        explanation (Explanation): Any explanation.
        top (int): Contributions shown. (default: :obj:`12`)
    """
    frame = explanation.top(top).iloc[::-1]
    fig = Figure(figsize=(8, 0.4 * max(len(frame), 1) + 1.5))
    ax = fig.add_subplot()
    labels = [_short(f"{label}") for label in frame["label"]]
    colours = [_KIND_COLOURS.get(kind, "#7f7f7f") for kind in frame["kind"]]
    ax.barh(np.arange(len(frame)), frame["weight"].to_numpy(), color=colours)
    ax.set_yticks(np.arange(len(frame)), labels)
    ax.axvline(0.0, color="#444444", linewidth=0.8)
    unit = "SHAP value (score units)" if explanation.method == "shap" else "relative importance"
    ax.set_xlabel(f"{explanation.method} contribution: {unit}")
    ax.set_title(f"Why item {explanation.item_id} for user {explanation.user_id}")
    for kind, colour in _KIND_COLOURS.items():
        if kind in set(frame["kind"]):
            ax.barh([np.nan], [np.nan], color=colour, label=kind.replace("_", " "))
    if len(frame):
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def _shap_values(explanation: Explanation):
    """``(shap, values)``: the shap module and the explanation's :class:`shap.Explanation`."""
    from .shap_explain import import_shap

    shap = import_shap()
    values = explanation.details.get("shap")
    if not isinstance(values, shap.Explanation):
        raise ValueError(f"A '{explanation.method}' explanation has no SHAP values; use "
                         "contributions_figure() or explain with method='shap'.")
    return shap, values


def _short(text: str, limit: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"
