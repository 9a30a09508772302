"""A self-contained HTML report of a run: data, model and settings, metrics against baselines
with confidence intervals, coverage and popularity bias, cold-item and long-tail slices, the
faithfulness of the explanations and three example users, in one file that opens offline.

* :func:`report_content` computes the numbers and tables (:class:`ReportContent`);
* :func:`render_report` turns them into one HTML document (plotly.js inlined once);
* :func:`build_report` does both; :func:`write_report` writes the file.

``python -m recsys_core report --run DIR --test FILE --out report.html [--privacy]`` and the
app's Train page use them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .content import (
    DEFAULT_BASELINES,
    EMPTY_SLICE_TEXT,
    ExampleUser,
    ModelResult,
    ReportContent,
    ReportOptions,
    report_content,
)
from .render import CONTENT_SECURITY_POLICY, render_report


def build_report(model: Any, dataset: Any, info: dict[str, Any], test: Any,
                 **kwargs: Any) -> str:
    """:func:`report_content` then :func:`render_report`: the report as an HTML string.

    Args:
        model (Recommender): The run's fitted model.
        dataset (Dataset): Its dataset (interactions = its training split).
        info (dict): The run's ``run.json``.
        test (pandas.DataFrame): Held-out interactions (known users and items).
        **kwargs: ``test_name``, ``skipped``, ``pseudonymizer``, ``options`` and
            ``on_progress`` of :func:`report_content`.
    """
    return render_report(report_content(model, dataset, info, test, **kwargs))


def write_report(path: str | os.PathLike, html: str) -> Path:
    """Write ``html`` to ``path`` (UTF-8), through a temporary sibling moved into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


__all__ = ["CONTENT_SECURITY_POLICY", "DEFAULT_BASELINES", "EMPTY_SLICE_TEXT", "ExampleUser",
           "ModelResult", "ReportContent", "ReportOptions", "build_report", "render_report",
           "report_content", "write_report"]
