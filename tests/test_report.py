"""The HTML report: content, escaping, offline, one plotly.js, empty slices, privacy, CLI."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pandas as pd
import pytest
import torch
from plotly.offline import get_plotlyjs

from recsys_core.cli import main
from recsys_core.ingest import load_dataset
from recsys_core.models import create_model
from recsys_core.privacy import Pseudonymizer
from recsys_core.report import (
    EMPTY_SLICE_TEXT,
    ReportOptions,
    build_report,
    render_report,
    report_content,
)
from recsys_core.run import read_run, save_run

HOSTILE = '<script>alert("t")</script><img src=x onerror=alert(1)>'
#: Cheap settings: one permutation, few users in the deletion test.
FAST = dict(n_resamples=200, faithfulness_users=3, faithfulness_k=2)


def interactions_csv(n_users: int = 12, prefix: str = "person-alpha-") -> str:
    lines = ["user_id,item_id,rating,timestamp"]
    for u in range(n_users):
        for k in range(6 + u % 4):
            item = (2 * u + k) % 14
            lines.append(f"{prefix}{u:02d},m{item},{1 + (u + k) % 5},{1_600_000_000 + 60 * (u * 20 + k)}")
    return "\n".join(lines) + "\n"


def items_csv(hostile: bool = False) -> str:
    lines = ["item_id,title,description,genres"]
    for j in range(16):  # items m14 and m15 have no interactions: cold
        title = f"{HOSTILE} {j}" if hostile and j % 3 == 0 else f"Movie {j}"
        title = title.replace('"', '""')
        lines.append(f'm{j},"{title}","Story number {j}.",{["Drama", "Comedy|Drama", "Sci-Fi"][j % 3]}')
    return "\n".join(lines) + "\n"


def split(dataset, held_out_items=()):
    inter = dataset.interactions
    test = inter.groupby("user_id").tail(2)
    return inter.drop(test.index), test


def hostile_data(root):
    """The interactions and the hostile item titles written under ``root``, read as the data
    set named :data:`HOSTILE` and split: ``(dataset, train, test)``."""
    (root / "ratings.csv").write_text(interactions_csv())
    (root / "items.csv").write_text(items_csv(hostile=True))
    dataset = load_dataset(str(root / "ratings.csv"), str(root / "items.csv"), name=HOSTILE)
    return (dataset, *split(dataset))


@pytest.fixture(scope="module")
def ease_run(tmp_path_factory):
    """An EASE run on data with hostile item titles, its test split kept with it."""
    root = tmp_path_factory.mktemp("report")
    dataset, train, test = hostile_data(root)
    model = create_model("ease", reg_lambda=5.0).fit(dataset, train)
    run_dir = save_run(root / "run", model, dataset, train, test=test)
    return read_run(run_dir), root


@pytest.fixture(scope="module")
def ease_content(ease_run):
    saved, _ = ease_run
    return report_content(saved.model, saved.dataset, saved.info, saved.test,
                          options=ReportOptions(baselines=("pop",), **FAST))


@pytest.fixture(scope="module")
def ease_html(ease_content):
    return render_report(ease_content)


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text outside scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


# ---------------------------------------------------------------------------- content
def test_report_holds_every_section(ease_content, ease_html):
    content = ease_content
    assert [r.name for r in content.results] == ["ease", "pop"]
    for result in content.results:
        assert list(result.metrics["metric"]) == ["recall", "ndcg", "precision", "map", "hit"]
        assert (result.metrics["low"] <= result.metrics["value"] + 1e-12).all()
        assert (result.metrics["value"] <= result.metrics["high"] + 1e-12).all()
        assert set(result.beyond) == {"coverage", "novelty", "popularity percentile"}
        assert set(result.slices) == {"cold_items", "long_tail"}
    assert len(content.examples) == 3
    assert len({e.shown_id for e in content.examples}) == 3
    for example in content.examples:
        assert len(example.recommendations) == 10
        assert "shap" in example.explanations and example.rationale
    assert set(content.faithfulness) == {"shap"}
    assert content.faithfulness["shap"]["deletion"] is not None
    for anchor in ("data", "model", "metrics", "beyond", "slices", "faithfulness", "examples"):
        assert f'id="{anchor}"' in ease_html
    text = " ".join(parse(ease_html).text)
    assert "95% interval" in text and "coverage" in text and "popularity percentile" in text
    assert "cold items" in text and "long tail" in text and "Why" in text


def test_figures_are_interactive_plotly_divs(ease_html):
    tags = parse(ease_html)
    divs = [a["id"] for t, a in tags.tags if t == "div" and a.get("id", "").startswith("figure-")]
    # metrics, coverage, slices, deletion curves, one SHAP chart per example user
    assert len(divs) >= 4 + 3
    assert ease_html.count("Plotly.newPlot(") == len(divs)


def test_hostile_strings_are_escaped(ease_html):
    assert HOSTILE not in ease_html
    assert "<img" not in ease_html and 'alert("t")' not in ease_html.replace("&#34;", "'")
    assert "&lt;script&gt;" in ease_html or "\\u003cscript\\u003e" in ease_html
    tags = parse(ease_html)
    assert not [t for t, _ in tags.tags if t in ("img", "iframe", "object", "embed")]
    assert not [a for _, a in tags.tags if any(k.startswith("on") for k in a)]
    scripts = [a for t, a in tags.tags if t == "script"]
    assert len(scripts) == 1 + ease_html.count("Plotly.newPlot(")  # plotly.js + one per figure


def test_report_opens_offline_with_a_single_plotly_copy(ease_html):
    signature = get_plotlyjs()[:300]
    assert ease_html.count(signature) == 1
    for tag, attrs in parse(ease_html).tags:
        assert tag != "link", attrs
        for key in ("src", "href", "action", "data"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (tag, attrs)
    styles = re.findall(r"<style>(.*?)</style>", ease_html, flags=re.S)
    assert styles and not any("@import" in s or "url(" in s for s in styles)
    policy = [a for t, a in parse(ease_html).tags
              if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert policy and policy[0]["content"].startswith("default-src 'none'")


def test_empty_slice_says_so_and_never_nan(tmp_path):
    (tmp_path / "r.csv").write_text(interactions_csv())
    (tmp_path / "i.csv").write_text(items_csv())
    dataset = load_dataset(str(tmp_path / "r.csv"), str(tmp_path / "i.csv"))
    warm = dataset.subset_interactions(dataset.interactions)
    train, test = split(warm)
    model = create_model("pop").fit(warm, train)
    saved = read_run(save_run(tmp_path / "run", model, warm, train))
    test = test[test["item_id"].isin(set(train["item_id"]))]  # no test interaction is cold
    html = build_report(saved.model, saved.dataset, saved.info, test,
                        options=ReportOptions(baselines=(), **FAST))
    text = " ".join(parse(html).text)
    assert EMPTY_SLICE_TEXT in text
    assert "nan" not in text.lower().split() and "NaN" not in text
    assert "cannot rescore an edited history" in text  # pop has no deletion test


def test_privacy_mode_shows_no_raw_user_id(ease_run):
    saved, _ = ease_run
    pseudonymizer = Pseudonymizer.random()
    html = build_report(saved.model, saved.dataset, saved.info, saved.test,
                        pseudonymizer=pseudonymizer,
                        options=ReportOptions(baselines=("pop",), **FAST))
    assert "person-alpha" not in html
    for user in saved.dataset.user_ids:
        assert str(user) not in html
    assert 'id="privacy-note"' in html
    assert sum(pseudonymizer.pseudonym(u) in html for u in saved.dataset.user_ids) >= 3


def test_privacy_mode_suppresses_groups_of_fewer_than_five_users(ease_run):
    saved, _ = ease_run
    few = saved.test[saved.test["user_id"].isin(saved.test["user_id"].unique()[:3])]
    content = report_content(saved.model, saved.dataset, saved.info, few,
                             pseudonymizer=Pseudonymizer.random(),
                             options=ReportOptions(baselines=(), **FAST))
    html = render_report(content)
    assert "suppressed: fewer than 5 users" in html
    text = " ".join(parse(html).text)
    value = content.results[0].metrics["value"].iloc[1]
    assert f"{value:,.4f}" not in text  # the 3-user ndcg is not shown


def test_flagship_report_has_attention_shap_and_rationales(tiny_dataset):
    inter = tiny_dataset.interactions
    test = inter.groupby("user_id").tail(1)
    train = inter.drop(test.index)
    text = torch.randn(tiny_dataset.num_items, 12, generator=torch.Generator().manual_seed(0))
    model = create_model("gnn-llm", epochs=1, device="cpu", embedding_dim=8,
                         item_text_embeddings=text).fit(tiny_dataset, train)
    info = {"model": "gnn-llm", "config": {"embedding_dim": 8}, "data": {"name": "tiny"}}
    content = report_content(model, tiny_dataset, info, test,
                             options=ReportOptions(baselines=(), n_examples=1, n_resamples=100,
                                                   faithfulness_users=2, faithfulness_k=2))
    assert set(content.faithfulness) == {"attention", "shap"}
    (example,) = content.examples
    assert set(example.explanations) == {"attention", "shap"} and example.rationale


# ---------------------------------------------------------------------------- command line
def test_cli_report_counts_what_it_skipped(ease_run, tmp_path, capsys):
    saved, root = ease_run
    rows = saved.test[["user_id", "item_id", "rating", "timestamp"]]
    extra = pd.DataFrame({"user_id": ["stranger", "person-alpha-01"], "item_id": ["m1", "m999"],
                          "rating": [3.0, 4.0], "timestamp": [1.7e9, 1.7e9]})
    pd.concat([rows, extra]).to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "report.html"
    code = main(["report", "--run", str(root / "run"), "--test", str(tmp_path / "test.csv"),
                 "--out", str(out), "--baselines", "pop", "--privacy"])
    assert code == 0
    err = capsys.readouterr().err
    assert "skipped 1 test row(s): unknown user" in err
    assert "skipped 1 test row(s): unknown item" in err
    html = out.read_text(encoding="utf-8")
    text = " ".join(" ".join(parse(html).text).split())
    assert "1 unknown user" in text and "1 unknown item" in text
    assert "person-alpha" not in html and "stranger" not in html


def test_cli_report_refuses_bad_input_with_exit_2(ease_run, tmp_path, capsys):
    _, root = ease_run
    (tmp_path / "test.csv").write_text("user_id,item_id\nnobody,m1\n")
    args = ["report", "--run", str(root / "run"), "--test", str(tmp_path / "test.csv"),
            "--out", str(tmp_path / "r.html")]
    assert main(args) == 2
    assert "no test interaction can be evaluated" in capsys.readouterr().err
    assert main(["report", "--run", str(tmp_path / "missing"), *args[3:]]) == 2
    assert main([*args, "--baselines", "ghost"]) == 2
    assert "ghost" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
