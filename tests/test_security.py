"""Hardening (issue "Hardening"): what a hostile file, string or id can and cannot do.

* models load only from safetensors + JSON, strictly (no pickle, no torch.load; extra,
  missing or mis-shaped tensors refused), and no source file calls a pickle-based loader;
* CSV downloads (CLI ``recommend`` and the app's download helper) neutralise formulas;
* oversized input is refused up front with the limit in the message, and upload names are
  never opened as paths;
* hostile strings are escaped in the pyvis graph, Markdown and plotly figures (the real-browser
  check is ``test_hostile_browser.py``);
* unknown ids and out-of-range indices raise :class:`~recsys_core.dataset.UnknownIdError`;
* interrupted training keeps its last good checkpoint and resumes exactly.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import html
import io
import json
import pickle
import re
import shutil
import struct
import sys
import tokenize
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import (
    FAST_SETTINGS,
    PicklePayload,
    assert_resumed_like_straight,
    fast_model,
    tiny_interactions_csv,
    tiny_items_csv,
    tiny_user_edges_csv,
)
from graph_page import graph_node_data
from safetensors.torch import load_file, save_file

from recsys_core import viz
from recsys_core.cli import main as cli_main
from recsys_core.csv_safety import FORMULA_PREFIXES, is_plain_number
from recsys_core.dataset import Dataset, UnknownIdError
from recsys_core.errors import DataError, ModelLoadError, RecScopeError, TrainingError
from recsys_core.graph import build_hetero_graph, k_hop_networkx
from recsys_core.html_safety import escape_html, escape_markdown
from recsys_core.ingest import load_dataset
from recsys_core.models import available_models, create_model
from recsys_core.run import MODEL_FILE, RUN_FILE, load_run, save_run
from recsys_core.views.graph import describe_nodes

ROOT = Path(__file__).resolve().parents[1]

MODELS = [m for m in FAST_SETTINGS if m in available_models()]

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "javascript:alert(1)",
    '<a href="javascript:alert(1)">x</a>',
    "see the href attribute",
    "</script><script>alert(1)</script>",
    "[click](javascript:alert(1))",
]
#: The parts of the payloads that must never reach a page unescaped.
RAW_MARKUP = ["<script", "<img", "<svg", "<a ", "</script", "onerror=alert(1)>"]


def tiny() -> Dataset:
    return load_dataset(("interactions.csv", tiny_interactions_csv().encode()),
                        ("items.csv", tiny_items_csv().encode()),
                        user_edges=("edges.csv", tiny_user_edges_csv().encode()), name="tiny")


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory) -> dict[str, Path]:
    """One saved run per registered model (copied before each test tampers with it)."""
    dataset = tiny()
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name in MODELS:
        model = fast_model(name, dataset).fit(dataset, dataset.interactions)
        runs[name] = save_run(root / name, model, dataset, dataset.interactions)
    return runs


@pytest.fixture
def run_copy(saved_runs, tmp_path):
    def copy(name: str = "ease") -> Path:
        return Path(shutil.copytree(saved_runs[name], tmp_path / f"copy-{name}"))

    return copy


def rewrite_checksums(run_dir: Path) -> None:
    """Make a tampered run self-consistent, so the format checks (not the checksum) decide."""
    info = json.loads((run_dir / RUN_FILE).read_text())
    for name in info["files"]:
        info["files"][name]["sha256"] = hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
    (run_dir / RUN_FILE).write_text(json.dumps(info))


# ===================================================================== 2. model loading
def _torch_save_bytes(tensors) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


HOSTILE_MODEL_FILES = {
    "pickle": lambda good: pickle.dumps({"weights": PicklePayload()}),
    "pickle protocol 0": lambda good: pickle.dumps(PicklePayload(), protocol=0),
    "torch.save": lambda good: _torch_save_bytes({"weights": torch.zeros(2), "x": PicklePayload()}),
    "random bytes": lambda good: np.random.default_rng(0).bytes(4096),
    "empty": lambda good: b"",
    "truncated safetensors": lambda good: good[: len(good) // 2],
    "header only": lambda good: good[: 8 + struct.unpack("<Q", good[:8])[0]],
    "absurd header length": lambda good: struct.pack("<Q", 1 << 40) + b"{}",
    "header not json": lambda good: struct.pack("<Q", 6) + b"{nope}" + good[8:],
    "offsets past the end": lambda good: _bad_offsets(good),
    "zip archive": lambda good: b"PK\x03\x04" + good,
}


def _bad_offsets(good: bytes) -> bytes:
    size = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + size])
    key = next(k for k in header if k != "__metadata__")
    header[key]["data_offsets"] = [0, 10**9]
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + good[8 + size:]


@pytest.mark.parametrize("kind", HOSTILE_MODEL_FILES)
def test_hostile_model_files_are_refused(kind, run_copy, no_pickle):
    run_dir = run_copy()
    good = (run_dir / MODEL_FILE).read_bytes()
    (run_dir / MODEL_FILE).write_bytes(HOSTILE_MODEL_FILES[kind](good))
    rewrite_checksums(run_dir)
    with pytest.raises(ModelLoadError, match="safetensors") as err:
        load_run(run_dir)
    assert str(run_dir / MODEL_FILE) in str(err.value)
    assert not hasattr(sys.modules["builtins"], "__pwned")  # the payload never ran


def _tamper(tensors: dict, how: str) -> dict:
    tensors = dict(tensors)
    if how == "extra":
        tensors["backdoor"] = torch.zeros(3)
    elif how == "missing":
        tensors.pop(sorted(tensors)[0])
    else:  # change the shape of the largest tensor (axes tied to users/items/config)
        key = max(tensors, key=lambda k: tensors[k].numel())
        value = tensors[key]
        if how == "row missing":
            value = value[:-1]
        elif how == "extra row":
            value = torch.cat([value, value[:1]])
        elif how == "extra axis":
            value = value.unsqueeze(0)
        tensors[key] = value.contiguous()
    return tensors


@pytest.mark.parametrize("how", ["extra", "missing", "row missing", "extra row", "extra axis"])
@pytest.mark.parametrize("name", MODELS)
def test_state_loading_is_strict_for_every_model(name, how, run_copy):
    run_dir = run_copy(name)
    tensors = load_file(str(run_dir / MODEL_FILE))
    assert tensors, f"{name} saved no tensors"
    save_file(_tamper(tensors, how), str(run_dir / MODEL_FILE))
    rewrite_checksums(run_dir)
    with pytest.raises(ModelLoadError) as err:
        load_run(run_dir)
    assert name in str(err.value) or MODEL_FILE in str(err.value), str(err.value)


@pytest.mark.parametrize("name", MODELS)
def test_good_runs_load_without_any_pickle_loader(name, saved_runs, no_pickle):
    model, dataset, info = load_run(saved_runs[name])
    assert info["model"] == name
    assert len(model.recommend(users=[dataset.user_ids[0]], k=3)) == 3


@pytest.mark.parametrize("bad_name", [
    "ghost", "../../evil", "os:system", "builtins:eval", "ease; rm -rf /", "__import__('os')",
    "recsys_core.models.ease:EASERecommender", "", 42, None, ["ease"],
])
def test_run_json_with_a_bad_model_name_is_refused(bad_name, run_copy):
    run_dir = run_copy()
    info = json.loads((run_dir / RUN_FILE).read_text())
    (run_dir / RUN_FILE).write_text(json.dumps({**info, "model": bad_name}))
    with pytest.raises(ModelLoadError):
        load_run(run_dir)


def test_run_json_config_cannot_smuggle_arguments(run_copy):
    run_dir = run_copy()
    info = json.loads((run_dir / RUN_FILE).read_text())
    for config in ({"reg_lambda": 5.0, "__class__": "os.system"}, {"shell": "rm -rf /"},
                   {"reg_lambda": "5; import os"}, ["not", "a", "dict"]):
        (run_dir / RUN_FILE).write_text(json.dumps({**info, "config": config}))
        with pytest.raises(ModelLoadError):
            load_run(run_dir)


def test_training_checkpoint_refuses_a_pickle(tmp_path, no_pickle):
    from recsys_core.models.mf import MFModule
    from recsys_core.training import CHECKPOINT_WEIGHTS, TrainConfig, train_model

    ds = tiny()
    config = TrainConfig(epochs=1, batch_size=64, device="cpu", show_progress=False,
                         checkpoint_dir=str(tmp_path))
    train_model(MFModule(ds.num_users, ds.num_items, 8), ds, ds.interactions,
                ds.interactions.iloc[:0], config)
    (tmp_path / CHECKPOINT_WEIGHTS).write_bytes(pickle.dumps({"w": PicklePayload()}))
    config.resume, config.epochs = True, 2
    with pytest.raises(ModelLoadError, match="cannot be read"):
        train_model(MFModule(ds.num_users, ds.num_items, 8), ds, ds.interactions, None, config)


# ---- static policy: no pickle-based loader anywhere in the shipped code
FORBIDDEN_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("cPickle", "load"),
    ("cPickle", "loads"), ("dill", "load"), ("dill", "loads"), ("cloudpickle", "load"),
    ("cloudpickle", "loads"), ("joblib", "load"), ("torch", "load"), ("jit", "load"),
    ("pd", "read_pickle"), ("pandas", "read_pickle"), ("shelve", "open"), ("marshal", "loads"),
}
FORBIDDEN_TEXT = re.compile(
    r"\b(?:c?pickle|dill|cloudpickle|joblib|torch)\s*\.\s*(?:load|loads|Unpickler)\b"
    r"|\bread_pickle\b|allow_pickle\s*=\s*True|torch\.jit\.load")


def shipped_sources() -> list[Path]:
    files = sorted((ROOT / "recsys_core").rglob("*.py")) + sorted((ROOT / "pages").glob("*.py"))
    return [*files, ROOT / "app.py"]


def code_without_strings(source: str) -> str:
    """``source`` without comments and string literals (docstrings may *mention* loaders)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return " ".join(t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.STRING))


def forbidden_uses(source: str) -> list[str]:
    found = [m.group(0) for m in FORBIDDEN_TEXT.finditer(code_without_strings(source))]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, (ast.Name, ast.Attribute)):
                owner = func.value.id if isinstance(func.value, ast.Name) else func.value.attr
                if (owner, func.attr) in FORBIDDEN_CALLS:
                    found.append(f"{owner}.{func.attr}()")
                if func.attr == "load" and owner in ("np", "numpy"):
                    if any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant)
                                                            and k.value.value is False)
                           for k in node.keywords):
                        found.append("np.load(allow_pickle=...)")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if (node.module.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle",
                                              "joblib", "shelve", "marshal")
                    or (node.module == "torch" and "load" in names)
                    or (node.module == "pandas" and "read_pickle" in names)):
                found.append(f"from {node.module} import {', '.join(sorted(names))}")
    return found


def test_scanner_finds_planted_loaders_and_ignores_mentions():
    planted = ("import pickle\nimport numpy as np\nx = pickle.load(f)\ny = torch.load('m.pt')\n"
               "z = np.load('a.npy', allow_pickle=True)\nw = pd.read_pickle('p')\n"
               "from joblib import load\n")
    assert len(forbidden_uses(planted)) >= 5
    mention = '"""Never uses pickle.load or torch.load."""\n# np.load(x, allow_pickle=True)\n'
    assert forbidden_uses(mention) == []


def test_no_pickle_based_loader_in_recsys_core_app_or_pages():
    sources = shipped_sources()
    assert len(sources) > 20
    offenders = {str(p.relative_to(ROOT)): uses for p in sources
                 if (uses := forbidden_uses(p.read_text(encoding="utf-8")))}
    assert offenders == {}, offenders


def test_pretrained_models_load_from_safetensors_without_remote_code():
    calls = []
    for path in shipped_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "from_pretrained"):
                kwargs = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                calls.append((path.name, kwargs))
    assert calls, "expected the text encoder to call from_pretrained"
    for name, kwargs in calls:
        assert kwargs.get("trust_remote_code") is False, (name, kwargs)
        assert kwargs.get("local_files_only") is True, (name, kwargs)
    model_calls = [k for _, k in calls if "use_safetensors" in k]
    assert model_calls and all(k["use_safetensors"] is True for k in model_calls)


# ===================================================================== 3. CSV downloads
HOSTILE_USERS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@evil", "\tTAB", "\rCR", "-5", "u1"]
HOSTILE_ITEMS = ['=HYPERLINK("http://evil","x")', "+1", "-1", "@x", "i1", "3.5", "-2e-4",
                 "\t=1+1", "x\r=1+1", "y\n@SUM(1)", 'q"uote,comma']


def expected_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_PREFIXES) and not is_plain_number(text) else text


@pytest.fixture(scope="module")
def hostile_ids_run(tmp_path_factory) -> Path:
    rows = [(u, HOSTILE_ITEMS[(j + k) % len(HOSTILE_ITEMS)], float(1 + k))
            for j, u in enumerate(HOSTILE_USERS) for k in range(3)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).assign(timestamp=np.nan)
    items = pd.DataFrame({"item_id": HOSTILE_ITEMS, "title": HOSTILE_ITEMS, "description": ""})
    dataset = Dataset(inter, items)
    model = create_model("ease", reg_lambda=1.0).fit(dataset, dataset.interactions)
    return save_run(tmp_path_factory.mktemp("csv") / "run", model, dataset, dataset.interactions)


def check_neutralised(text: str, id_columns=("user_id", "item_id"), numeric=("rank", "score")):
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows
    originals = {"user_id": HOSTILE_USERS, "item_id": HOSTILE_ITEMS}
    for row in rows:
        for col in id_columns:
            cell = row[col]
            assert not cell.startswith(FORMULA_PREFIXES) or is_plain_number(cell), cell
            assert cell in {expected_cell(v) for v in originals[col]}, cell
        for col in numeric:
            float(row[col])  # numbers stay numbers (no quote prefix)
            assert not row[col].startswith("'")
    return rows


def test_cli_recommend_csv_neutralises_formulas(hostile_ids_run, tmp_path, capsys):
    out = tmp_path / "recs.csv"
    assert cli_main(["recommend", "--run", str(hostile_ids_run), "--out", str(out), "--k",
                     "3"]) == 0
    with open(out, encoding="utf-8", newline="") as handle:
        rows = check_neutralised(handle.read())
    cells = {r["user_id"] for r in rows}
    assert "'=cmd|' /C calc'!A0" in cells and "'@evil" in cells and "-5" in cells
    assert "'\tTAB" in cells and "'\rCR" in cells
    capsys.readouterr()
    assert cli_main(["recommend", "--run", str(hostile_ids_run), "--out", "-", "--k", "2"]) == 0
    check_neutralised(capsys.readouterr().out)


def test_app_download_helper_neutralises_formulas(monkeypatch):
    pytest.importorskip("streamlit")
    from recscope_ui import ui
    captured = {}

    def fake_download_button(label, data, file_name=None, mime=None, **kwargs):
        captured.update(data=data, file_name=file_name, mime=mime)

    monkeypatch.setattr(ui.st, "download_button", fake_download_button)
    frame = pd.DataFrame({
        "user_id": HOSTILE_USERS + HOSTILE_USERS[:3], "item_id": HOSTILE_ITEMS,
        "rank": np.arange(1, 12), "score": np.linspace(-1.5, 2.0, 11),
    })
    ui.download_csv("Download", frame, "recs.csv")
    assert captured["mime"] == "text/csv" and captured["file_name"] == "recs.csv"
    text = captured["data"].decode("utf-8") if isinstance(captured["data"], bytes) \
        else captured["data"]
    rows = check_neutralised(text)
    assert [float(r["score"]) for r in rows] == pytest.approx(frame["score"].tolist())
    # A carriage return inside a cell must not start a new row (whose first cell would be a
    # live formula): the cells come back exactly, one row per frame row.
    assert [r["item_id"] for r in rows] == [expected_cell(v) for v in HOSTILE_ITEMS]


def test_pages_offer_csv_only_through_the_safe_helper():
    """No page builds CSV itself (``to_csv``) or offers it through a bare download button."""
    offenders = []
    for path in [*sorted((ROOT / "pages").glob("*.py")),
                 *sorted((ROOT / "recscope_ui").glob("*.py")), ROOT / "app.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr == "to_csv":
                    offenders.append(f"{path.name}:{node.lineno} to_csv")
                if node.func.attr == "download_button":
                    text = ast.unparse(node)
                    if ("csv" in text.lower() and "to_csv_string" not in text):
                        offenders.append(f"{path.name}:{node.lineno} {text[:80]}")
    assert offenders == []


# ===================================================================== 4. size limits, names
def test_max_rows_refused_before_any_parsing(monkeypatch):
    from recsys_core.ingest import readers

    def no_parsing(*args, **kwargs):
        raise AssertionError("the file was parsed although it is over the row limit")

    monkeypatch.setattr(readers, "_parse_text", no_parsing)
    monkeypatch.setattr(pd, "read_csv", no_parsing)
    data = ("user_id,item_id\n" + "".join(f"u{k},i{k}\n" for k in range(5000))).encode()
    with pytest.raises(DataError, match=r"5,000 rows, more than the limit of 1,000") as err:
        load_dataset(("big.csv", data), max_rows=1000)
    assert "big.csv" in str(err.value) and "--max-rows" in str(err.value)


def test_max_rows_on_a_path_stops_reading_early(tmp_path, monkeypatch):
    """A 2 GiB file over the limit is refused after reading its first chunk, not loaded."""
    from recsys_core.ingest import readers

    path = tmp_path / "huge.csv"
    with open(path, "wb") as handle:
        handle.write(b"user_id,item_id\n" + b"u,i\n" * 2000)
        handle.truncate(2 << 30)  # sparse: costs no disk, but 2 GiB to read
    read = []
    real_open = open

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def read(self, *args):
            chunk = self.handle.read(*args)
            read.append(len(chunk))
            return chunk

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(readers, "open", lambda *a, **k: Counting(real_open(*a, **k)),
                        raising=False)
    with pytest.raises(DataError, match="more than the limit of 1,000"):
        load_dataset(path, max_rows=1000)
    assert 0 < sum(read) <= 64 << 20


def test_max_rows_parquet_uses_the_metadata_only(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"user_id": [f"u{k}" for k in range(3000)],
                             "item_id": [f"i{k}" for k in range(3000)]}), buffer)

    def no_reading(*args, **kwargs):
        raise AssertionError("the rows were read although the file is over the limit")

    monkeypatch.setattr(pd, "read_parquet", no_reading)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", no_reading)
    with pytest.raises(DataError, match="3,000 rows, more than the limit of 100"):
        load_dataset(("big.parquet", buffer.getvalue()), max_rows=100)


def test_max_distinct_ids_refused_with_the_limit():
    data = ("user_id,item_id\n" + "".join(f"u{k},i{k % 3}\n" for k in range(50))).encode()
    with pytest.raises(DataError, match=r"50 distinct users, more than the limit of 10") as err:
        load_dataset(("many.csv", data), max_ids=10)
    assert "--max-ids" in str(err.value)
    items = ("item_id,title\n" + "".join(f"i{k},t\n" for k in range(30))).encode()
    with pytest.raises(DataError, match="more than the limit of 20"):
        load_dataset(("few.csv", data[:60]), ("items.csv", items), max_ids=20)


def test_too_many_columns_refused_with_the_limit():
    from recsys_core.ingest.readers import MAX_COLUMNS

    wide = ",".join(f"c{k}" for k in range(MAX_COLUMNS + 1)) + "\n" + ",".join(
        ["1"] * (MAX_COLUMNS + 1)) + "\n"
    with pytest.raises(DataError, match=f"{MAX_COLUMNS + 1:,} columns, more than the limit of "
                                        f"{MAX_COLUMNS:,}"):
        load_dataset(("wide.csv", wide.encode()))
    # A header line longer than the 64 KB sniffing sample: only a lower bound is known.
    wider = ",".join(f"c{k}" for k in range(20_000)) + "\n" + ",".join(["1"] * 20_000) + "\n"
    with pytest.raises(DataError, match=r"has at least [\d,]+ columns, more than the limit"):
        load_dataset(("wider.csv", wider.encode()))


def test_huge_timestamp_cells_are_counted_not_parsed():
    data = (b"user_id,item_id,timestamp\nu1,i1," + b"2020-01-01 " * 100_000
            + b"\nu2,i2,2020-01-02\nu3,i3,2020-01-03\n")
    dataset = load_dataset(("t.csv", data))
    assert dataset.report.problem_counts()["unparsed_timestamps"] == 1
    assert np.isnan(dataset.interactions["timestamp"][0])
    assert dataset.interactions["timestamp"][1] == 1577923200.0


def test_upload_size_caps_are_configured():
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    server_cap = int(re.search(r"(?m)^maxUploadSize\s*=\s*(\d+)", config).group(1))
    assert 0 < server_cap <= 1024
    calls = []
    for path in [*sorted((ROOT / "pages").glob("*.py")),
                 *sorted((ROOT / "recscope_ui").glob("*.py")), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "file_uploader"):
                calls.append((path.name, {k.arg for k in node.keywords}))
    assert calls
    assert all("max_upload_size" in keys for _, keys in calls), calls
    from recscope_ui import ui
    assert all(0 < mb <= server_cap for mb in ui.UPLOAD_LIMIT_MB.values())


_OPENED: list[str] = []
_AUDITING: list[bool] = [False]


def _audit(event: str, args) -> None:
    if _AUDITING[0] and event == "open" and args and isinstance(args[0], (str, bytes)):
        _OPENED.append(args[0] if isinstance(args[0], str) else args[0].decode(errors="replace"))


sys.addaudithook(_audit)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "/etc", "~/.ssh/id_rsa",
                                  "C:\\Windows\\win.ini", "file:///etc/passwd", "real.csv"])
def test_upload_names_are_never_opened(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.csv").write_text("user_id,item_id\nFROM,DISK\n")
    data = b"user_id,item_id\nfrom,bytes\n"
    _OPENED.clear()
    _AUDITING[0] = True
    try:
        open(tmp_path / "probe.txt", "w").close()  # the hook sees opens (not a vacuous test)
        dataset = load_dataset((name, data), items=(name + ".items", b"item_id,title\nbytes,t\n"))
    finally:
        _AUDITING[0] = False
    assert any(p.endswith("probe.txt") for p in _OPENED)
    assert dataset.interactions[["user_id", "item_id"]].values.tolist() == [["from", "bytes"]]
    suspicious = [p for p in _OPENED if "passwd" in p or "real.csv" in p or "win.ini" in p
                  or "id_rsa" in p or p.rstrip("/") == "/etc"]
    assert suspicious == []
    assert dataset.report.files[0].name == name


# ===================================================================== 5a. escaping
@pytest.fixture(scope="module")
def hostile_dataset() -> Dataset:
    items = pd.DataFrame({
        "item_id": [f"i{k}{p}" for k, p in enumerate(PAYLOADS)],
        "title": PAYLOADS[::-1],
        "description": [p + " described" for p in PAYLOADS],
        "genre": [[p, "Drama"] for p in PAYLOADS],
    })
    inter = pd.DataFrame({
        "user_id": [f"u{k % 3}{PAYLOADS[k % 3]}" for k in range(12)],
        "item_id": [items["item_id"][k % len(PAYLOADS)] for k in range(12)],
        "rating": np.arange(12, dtype=float) % 5 + 1,
        "timestamp": 1.6e9 + np.arange(12) * 86400.0,
    })
    edges = pd.DataFrame({"src": [inter["user_id"][0]], "dst": [inter["user_id"][1]]})
    return Dataset(inter, items, ["genre"], user_edges=edges, name=PAYLOADS[1])


def all_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, (list, tuple, np.ndarray)):
        return [s for v in value for s in all_strings(v)]
    return []


class TagCollector(HTMLParser):
    """Start tags of a page as the browser's tokenizer sees them (script content is text)."""

    @classmethod
    def collect(cls, page: str) -> list[tuple[str, list]]:
        parser = cls()
        parser.tags = []
        parser.feed(page)
        return parser.tags

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


def assert_no_raw_markup(strings, where: str):
    for text in strings:
        for raw in RAW_MARKUP:
            assert raw not in text, f"{where}: {text!r}"


@pytest.mark.parametrize("centre", [("user", 0), ("item", 1), ("genre", 0)])
def test_graph_html_escapes_every_node_and_edge(hostile_dataset, centre):
    graph = k_hop_networkx(build_hetero_graph(hostile_dataset), *centre, num_hops=2)
    labels, titles = describe_nodes(graph, hostile_dataset)
    page = viz.graph_html(graph, center=f"{centre[0]}:{centre[1]}", labels=labels,
                          titles=titles, edge_scores={next(iter(graph.edges)): 0.5})
    nodes, edges = graph_node_data(page)
    assert len(nodes) == graph.number_of_nodes() > 3 and edges
    for entry in nodes + edges:
        # Labels are canvas text (shown as typed); tooltips become DOM text, so are escaped.
        assert "<" not in entry.get("title", ""), entry
        assert ">" not in entry.get("title", "") and '"' not in entry.get("title", "")
        assert "href" not in entry.get("title", "").lower()
    # Tooltips hold the text itself once the entities are decoded.
    shown = {n["id"]: html.unescape(n["title"]).replace("\u200b", "") for n in nodes}
    for key, text in titles.items():
        assert " ".join(shown[key].split()) == " ".join(text.split())[:600]
    # pyvis' raw-HTML tooltip template is not in use, and the page parses to our own tags
    # only: no payload closed a script, opened an element or added an event handler.
    assert "popup.innerHTML" not in page and "htmlTitle" not in page
    tags = TagCollector.collect(page)
    assert {t for t, _ in tags} <= {"html", "head", "meta", "script", "style", "body", "div",
                                    "span", "center", "h1", "link", "title"}, tags
    assert not [a for _, attrs in tags for a in attrs
                if a[0].startswith("on") or "javascript:" in (a[1] or "").lower()]
    scripts = [t for t, _ in tags if t == "script"]
    assert len(scripts) == page.count("</script>")


def test_pages_never_render_raw_html():
    """User strings reach the browser only through escaping widgets: no unsafe_allow_html,
    no st.html, no components.html (the graph iframe gets the escaped pyvis page)."""
    offenders = []
    for path in [*sorted((ROOT / "pages").glob("*.py")),
                 *sorted((ROOT / "recscope_ui").glob("*.py")), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            if any(k.arg == "unsafe_allow_html" and not (
                    isinstance(k.value, ast.Constant) and k.value.value is False)
                    for k in node.keywords):
                offenders.append(f"{path.name}:{node.lineno} unsafe_allow_html")
            if isinstance(node.func, ast.Attribute) and node.func.attr == "html":
                offenders.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}")
    assert offenders == []


def test_markdown_helpers_escape_payloads(hostile_dataset):
    from recscope_ui import ui
    for payload in PAYLOADS:
        for out in (escape_markdown(payload), ui.md(payload)):
            assert "<" not in out and ">" not in out, out
            assert not re.search(r"(?<!\\)\[", out) and not re.search(r"(?<!\\)\(", out), out
        assert "<" not in escape_html(payload) and ">" not in escape_html(payload)
    report = load_dataset((PAYLOADS[1] + ".csv",
                           f"user_id,item_id,{PAYLOADS[4]}\n{PAYLOADS[0]},x,1\n"
                           f"{PAYLOADS[0]},x,2\n".encode())).report
    markdown = report.to_markdown()
    assert not re.search(r"(?<!\\)<", markdown), markdown


def test_plotly_figures_escape_user_strings(hostile_dataset):
    ds = hostile_dataset
    figures = {"attribute counts": viz.attribute_counts_fig(ds, "genre")}
    points = pd.DataFrame({"x": np.arange(8.0), "y": np.arange(8.0) % 3,
                           "kind": ["item", "user"] * 4, "label": PAYLOADS,
                           "color": PAYLOADS[:4] * 2, "key": [str(k) for k in range(8)]})
    figures["embedding map"] = viz.embedding_map_fig(points, color="genre")
    at_k = pd.DataFrame([{"model": p, "k": k, "metric": m, "value": 0.1 * k}
                         for p in PAYLOADS[:3] for k in (5, 10) for m in ("recall", "ndcg")])
    figures["metrics at k"] = viz.metrics_at_k_fig(at_k)
    figures["metric bars"] = viz.metric_bars_fig(
        pd.DataFrame({"model": PAYLOADS[:3], "recall": [0.1, 0.2, 0.3]}), ["recall"], "Recall")
    figures["per-user histogram"] = viz.per_user_histogram_fig(
        {p: np.linspace(0, 1, 5) for p in PAYLOADS[:3]}, "ndcg@10")
    history = [{"epoch": e, "loss": 1.0 / e, "valid_ndcg": 0.1 * e} for e in (1, 2, 3)]
    figures["compare curves"] = viz.compare_curves_fig({p: history for p in PAYLOADS[:3]})
    figures["contributions"] = viz.contributions_bar_fig(pd.DataFrame(
        {"label": PAYLOADS, "weight": np.linspace(-1, 1, 8), "kind": ["history_item"] * 8}))
    curve = pd.DataFrame({"k": [1, 2], "top": [0.1, 0.2], "random": [0.0, 0.1]})
    figures["deletion curves"] = viz.deletion_curves_fig({p: curve for p in PAYLOADS[:2]}, "t")
    edges = pd.DataFrame({"layer": [0, 0, 1], "head": [0, 1, 0], "source_type": ["item"] * 3,
                          "source_index": [0, 1, 2], "contribution": [0.5, -0.2, 0.1],
                          "alpha": [0.3, 0.5, 0.2]})
    labels = {("item", k): PAYLOADS[k] for k in range(3)}
    figures["attention heatmap"] = viz.attention_heatmap_fig(edges, labels)
    for name, fig in figures.items():
        data = fig.to_plotly_json()
        # legendgroup is an internal key, never displayed.
        traces = [s for trace in data["data"] for s in all_strings(
            {k: v for k, v in trace.items() if k not in ("hovertemplate", "legendgroup")})]
        assert_no_raw_markup(traces, name)
        layout = all_strings(data["layout"])
        assert_no_raw_markup(layout, name + " layout")
        for trace in data["data"]:
            assert_no_raw_markup([trace.get("hovertemplate") or ""], name + " hovertemplate")


# ===================================================================== 6. unknown ids
@pytest.fixture(scope="module")
def fitted_models(saved_runs) -> dict:
    return {name: load_run(path)[0] for name, path in saved_runs.items()}


@pytest.mark.parametrize("name", MODELS)
def test_unknown_ids_raise_unknown_id_error(name, fitted_models):
    model = fitted_models[name]
    ds = model.dataset
    with pytest.raises(UnknownIdError, match="'nobody'"):
        model.recommend(users=["nobody"], k=3)
    with pytest.raises(UnknownIdError, match="'no-item'"):
        model.recommend(users=[ds.user_ids[0]], k=3, candidates=[ds.item_ids[0], "no-item"])
    with pytest.raises(RecScopeError):
        model.recommend(users=[ds.user_ids[0], 0], k=3)  # an index is not an id
    for users, items in (([ds.num_users], None), ([-1], None), ([0], [ds.num_items]),
                         ([0], [-1]), ([0, 10**9], [0]), (np.array([2**40]), None)):
        with pytest.raises(UnknownIdError, match="out of range"):
            model.score(np.asarray(users), None if items is None else np.asarray(items))
    assert model.score(np.array([0]), np.array([ds.num_items - 1])).shape == (1, 1)
    assert model.score(np.array([], dtype=np.int64)).shape[0] == 0


def test_unknown_ids_in_the_cli_and_explain_api(saved_runs, tmp_path, capsys):
    from recsys_core.explain import explain

    run = str(saved_runs["ease"])
    assert cli_main(["score", "--run", run, "--user", "nobody", "--items", "i1"]) == 2
    assert "nobody" in capsys.readouterr().err
    assert cli_main(["score", "--run", run, "--user", "u1", "--items", "i1,ghost"]) == 2
    assert "ghost" in capsys.readouterr().err
    model, dataset, _ = load_run(run)
    with pytest.raises(UnknownIdError):
        explain(model, dataset, "nobody", "i1", method="shap")
    with pytest.raises(UnknownIdError):
        explain(model, dataset, "u1", "ghost", method="shap")


# ===================================================================== 7. interrupted training
def _train_config(tmp_path, **changes):
    from recsys_core.training import TrainConfig

    base = dict(epochs=4, batch_size=8, lr=0.01, seed=0, device="cpu", show_progress=False,
                checkpoint_dir=str(tmp_path))
    return TrainConfig(**{**base, **changes})


def _mf(ds):
    from recsys_core.models.mf import MFModule

    return MFModule(ds.num_users, ds.num_items, 8)


class KilledMidEpoch(Exception):
    """Stands in for SIGINT/SIGKILL at an arbitrary step."""


def test_interrupted_training_keeps_the_checkpoint_and_resumes_exactly(tmp_path):
    from recsys_core.training import load_checkpoint, train_model

    ds = tiny()
    no_valid = ds.interactions.iloc[:0]  # every epoch is checkpointed
    straight = _mf(ds)
    full = train_model(straight, ds, ds.interactions, no_valid,
                       _train_config(tmp_path / "straight"))

    steps_per_epoch = -(-len(ds.interactions) // 8)
    killed = _mf(ds)
    calls = {"n": 0}
    forward = killed.forward

    def dying_forward(*args, **kwargs):
        calls["n"] += 1
        if killed.training and calls["n"] > 2 * steps_per_epoch + steps_per_epoch // 2:
            raise KilledMidEpoch  # in the middle of epoch 3
        return forward(*args, **kwargs)

    killed.forward = dying_forward
    with pytest.raises(KilledMidEpoch):
        train_model(killed, ds, ds.interactions, no_valid, _train_config(tmp_path / "run"))
    tensors, meta = load_checkpoint(tmp_path / "run")
    assert meta["epoch"] == 2 and [h["epoch"] for h in meta["history"]] == [1, 2]
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]

    resumed = _mf(ds)
    result = train_model(resumed, ds, ds.interactions, no_valid,
                         _train_config(tmp_path / "run", resume=True))
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert_resumed_like_straight(result, full, resumed, straight)


def test_interrupted_from_on_progress_resumes_after_that_epoch(tmp_path):
    from recsys_core.training import load_checkpoint, train_model

    ds = tiny()

    def stop_at_epoch_two(event):
        if event["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(_mf(ds), ds, ds.interactions, ds.interactions.iloc[:0],
                    _train_config(tmp_path), on_progress=stop_at_epoch_two)
    assert load_checkpoint(tmp_path)[1]["epoch"] == 2
    result = train_model(_mf(ds), ds, ds.interactions, ds.interactions.iloc[:0],
                         _train_config(tmp_path, resume=True))
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]


@pytest.mark.parametrize("dies_while_writing", ["weights", "metadata"])
def test_a_kill_while_checkpointing_leaves_a_loadable_checkpoint(tmp_path, monkeypatch,
                                                                dies_while_writing):
    import recsys_core.training as training

    ds = tiny()
    writes = {"n": 0}
    real = training._atomic_write

    def dying_write(path, write):
        is_weights = path.name == training.CHECKPOINT_WEIGHTS
        if is_weights:
            writes["n"] += 1
        if writes["n"] == 3 and is_weights == (dies_while_writing == "weights"):
            # Half a file in the temporary name, then the process dies.
            def half(tmp):
                write(tmp)
                data = Path(tmp).read_bytes()
                Path(tmp).write_bytes(data[: len(data) // 2])
                raise KilledMidEpoch

            return real(path, half)
        return real(path, write)

    monkeypatch.setattr(training, "_atomic_write", dying_write)
    with pytest.raises(KilledMidEpoch):
        training.train_model(_mf(ds), ds, ds.interactions, ds.interactions.iloc[:0],
                             _train_config(tmp_path))
    monkeypatch.setattr(training, "_atomic_write", real)
    tensors, meta = training.load_checkpoint(tmp_path)  # loadable, and self-consistent
    assert meta["epoch"] in (2, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    result = training.train_model(_mf(ds), ds, ds.interactions, ds.interactions.iloc[:0],
                                  _train_config(tmp_path, resume=True))
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]


def test_non_finite_loss_stops_with_training_error_through_the_model_api():
    ds = tiny()
    model = create_model("mf", epochs=3, device="cpu", embedding_dim=8, lr=1e30,
                         max_grad_norm=None)
    with pytest.raises(TrainingError, match="diverged"):
        model.fit(ds, ds.interactions)
