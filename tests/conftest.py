"""Shared tiny fixtures. Files are written into ``tmp_path``; nothing here needs network or the
MovieLens download.

* ``write_file(name, content)`` writes ``str`` (UTF-8) or ``bytes`` into ``tmp_path`` and returns
  the path.
* ``tiny_files`` writes a clean tiny dataset (8 users, 12 items of which 2 are cold, 49
  interactions, genres + category attributes, descriptions, users and user-user edges) and
  returns ``{"interactions", "items", "users", "user_edges"}`` paths.
* ``tiny_dataset`` is that data loaded through :func:`recsys_core.ingest.load_dataset`.
* ``single_thread`` runs a module's tests with one intra-op torch thread (request it with
  ``pytestmark = pytest.mark.usefixtures("single_thread")``).
* ``split_files`` writes the tiny interactions as a train file and a test file (each user's 2nd
  row), next to the items and user-user edges.
* ``no_pickle`` fails the test if any pickle-based loader is called; :class:`PicklePayload`
  is an object whose unpickling would run code.
* :func:`assert_resumed_like_straight` checks that a training run resumed from a checkpoint
  reproduced an uninterrupted one.
* :func:`fast_model` makes any registered model with :data:`FAST_SETTINGS` (tiny settings, so
  every model trains in a second or two).
* :func:`random_matrix` is a seeded random binary user-item matrix (CSR, last item cold).
* :func:`faithfulness_view` runs the Explain page's faithfulness view (AppTest) on request.
* ``explain_ds`` is test_explain's explanation data set, ``flagship`` the small flagship fitted
  on it and ``flagship_run_dir`` that model saved as a run (all three once per module).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys_core.dataset import Dataset

TINY_NUM_USERS = 8
TINY_NUM_ITEMS = 12  # items 11 and 12 have no interactions (cold)
_GENRES = ["Action|Comedy", "Drama", "Comedy|Romance", "Action|Thriller", "Drama|Romance",
           "Sci-Fi|Action", "Comedy", "Thriller|Drama", "Romance", "Sci-Fi|Thriller",
           "Action|Drama", "Comedy|Sci-Fi"]
_CATEGORIES = ["film", "series", "film", "documentary", "film", "series",
               "film", "series", "documentary", "film", "series", "film"]
_WORDS = ["a daring rescue", "a quiet family story", "two rivals fall in love", "a heist gone wrong",
          "letters across the sea", "robots on a distant moon", "a wedding in chaos",
          "a detective's last case", "summer in Paris", "a signal from deep space",
          "a soldier's return", "an AI learns to laugh"]


def tiny_interactions_csv() -> str:
    """49 interactions: user ``u<k>`` rates 5-7 consecutive items (mod 10), hourly timestamps."""
    lines = ["user_id,item_id,rating,timestamp"]
    for u in range(1, TINY_NUM_USERS + 1):
        for k in range(5 + u % 3):
            item = (3 * u + k) % 10 + 1
            rating = 1 + (u + k) % 5
            ts = 1_600_000_000 + 3600 * (10 * u + k)
            lines.append(f"u{u},i{item},{rating},{ts}")
    return "\n".join(lines) + "\n"


def tiny_items_csv() -> str:
    lines = ["item_id,title,description,genres,category"]
    for j in range(1, TINY_NUM_ITEMS + 1):
        lines.append(f'i{j},Film {j},"A story about {_WORDS[j - 1]}.",{_GENRES[j - 1]},'
                     f"{_CATEGORIES[j - 1]}")
    return "\n".join(lines) + "\n"


def tiny_users_csv() -> str:
    lines = ["user_id,age_group,country"]
    for u in range(1, TINY_NUM_USERS + 1):
        lines.append(f"u{u},{['18-24', '25-34', '35-44'][u % 3]},{['FR', 'DE'][u % 2]}")
    return "\n".join(lines) + "\n"


def tiny_user_edges_csv() -> str:
    return "user_id,friend_id\nu1,u2\nu2,u3\nu3,u1\nu4,u5\nu6,u7\nu8,u1\n"


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """Write ``content`` (str as UTF-8, or bytes) to ``tmp_path / name``; return the path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    return write


@pytest.fixture
def tiny_files(write_file) -> dict[str, Path]:
    """Paths of the tiny dataset's files (interactions, items, users, user_edges)."""
    return {
        "interactions": write_file("interactions.csv", tiny_interactions_csv()),
        "items": write_file("items.csv", tiny_items_csv()),
        "users": write_file("users.csv", tiny_users_csv()),
        "user_edges": write_file("user_edges.csv", tiny_user_edges_csv()),
    }


@pytest.fixture
def tiny_dataset(tiny_files) -> Dataset:
    """The tiny dataset loaded with :func:`recsys_core.ingest.load_dataset`."""
    from recsys_core.ingest import load_dataset

    return load_dataset(tiny_files["interactions"], tiny_files["items"],
                        user_edges=tiny_files["user_edges"], users=tiny_files["users"],
                        name="tiny")


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op torch thread for a module's tests, restored afterwards: tiny tensors are
    faster that way and immune to a busy machine's contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def split_files(tiny_files, write_file) -> dict[str, Path]:
    """The tiny interactions as a train file and a test file (each user's 2nd row), plus the
    tiny items and user-user edges and the whole interactions file (``all``)."""
    frame = pd.read_csv(tiny_files["interactions"], dtype=str)
    test_rows = frame.groupby("user_id").nth(1).index
    return {"train": write_file("train.csv", frame.drop(test_rows).to_csv(index=False)),
            "test": write_file("test.csv", frame.loc[test_rows].to_csv(index=False)),
            "all": tiny_files["interactions"], "items": tiny_files["items"],
            "user_edges": tiny_files["user_edges"]}


class PicklePayload:
    """Unpickling this would run code: it marks ``builtins.__pwned`` and raises SystemExit.
    Loading a file that holds it must never get that far."""

    def __reduce__(self):
        return (exec, ("import sys; sys.modules['builtins'].__pwned = True; "
                       "raise SystemExit('a pickle payload was executed')",))


@pytest.fixture
def no_pickle(monkeypatch):
    """Every pickle-based loader (pickle, torch.load, numpy.load, pandas.read_pickle) fails
    the test if it is called."""
    import torch

    def forbidden(*args, **kwargs):
        raise AssertionError("a pickle-based loader was called")

    for module, attr in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (torch, "load"), (np, "load"), (pd, "read_pickle")):
        monkeypatch.setattr(module, attr, forbidden)


#: Tiny settings per registered model, so every one trains in a second or two.
FAST_SETTINGS: dict[str, dict] = {
    "pop": {},
    "ease": {"reg_lambda": 5.0},
    "text-knn": {},
    "mf": {"epochs": 2, "device": "cpu", "embedding_dim": 8},
    "lightgcn": {"epochs": 2, "device": "cpu", "embedding_dim": 8},
    "gnn-llm": {"epochs": 2, "device": "cpu", "embedding_dim": 8},
    "rp3beta": {"neighbours": 4},
    "itemknn": {"neighbours": 4, "shrink": 1.0},
    "text-pop": {},
}
#: Models that take item text embeddings (:func:`fast_model` gives them random ones).
TEXT_MODELS = frozenset({"text-knn", "gnn-llm", "text-pop"})


def random_item_text(dataset: Dataset, dim: int = 12, seed: int = 0):
    """Seeded random item text embeddings ``[num_items, dim]`` (a torch tensor)."""
    import torch

    return torch.randn(dataset.num_items, dim, generator=torch.Generator().manual_seed(seed))


def fast_model(name: str, dataset: Dataset, text_dim: int = 12, **settings):
    """The registered model ``name`` with :data:`FAST_SETTINGS` (``settings`` override them);
    text models get seeded random ``text_dim``-dimensional item text embeddings."""
    from recsys_core.models import create_model

    kwargs = dict(FAST_SETTINGS[name], **settings)
    if name in TEXT_MODELS:
        kwargs["item_text_embeddings"] = random_item_text(dataset, text_dim)
    return create_model(name, **kwargs)


def assert_resumed_like_straight(resumed_result, straight_result, resumed, straight) -> None:
    """A run resumed from a checkpoint reproduced the uninterrupted run: every epoch in its
    history, the same losses, bit-identical weights (``resumed`` and ``straight`` are the two
    trained modules, the results their :class:`~recsys_core.training.TrainResult`)."""
    import torch

    epochs = [h["epoch"] for h in straight_result.history]
    assert [h["epoch"] for h in resumed_result.history] == epochs
    assert [h["loss"] for h in resumed_result.history] == pytest.approx(
        [h["loss"] for h in straight_result.history])
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.fixture(scope="module")
def explain_ds() -> Dataset:
    """:func:`test_explain.explain_dataset` (topic items and users, isolated ones)."""
    from test_explain import explain_dataset

    return explain_dataset()


@pytest.fixture(scope="module")
def flagship(explain_ds):
    """:func:`test_explain.fit_flagship` on ``explain_ds`` (16-d, two epochs, private texts)."""
    from test_explain import fit_flagship

    return fit_flagship(explain_ds)


@pytest.fixture(scope="module")
def flagship_run_dir(explain_ds, flagship, tmp_path_factory) -> Path:
    """``flagship`` saved as a run directory (trained on every interaction of ``explain_ds``)."""
    from recsys_core.run import save_run

    return save_run(tmp_path_factory.mktemp("runs") / "flagship", flagship, explain_ds,
                    explain_ds.interactions)


def faithfulness_view(workspace, run_id: str, users: int, methods: list[str],
                      state: dict | None = None):
    """The Explain page of ``run_id`` on its faithfulness view after the deletion test ran
    (its button clicked): ``users`` sampled users, ``methods`` compared, ``state`` more
    session-state entries (e.g. the privacy switch). Returns the AppTest."""
    from test_app_pages import assert_clean, page_test

    workspace.runs.active_id = run_id
    at = page_test("explain", workspace)
    for key, value in dict(state or {}, **{"x-view": "Faithfulness", "x-f-users": users,
                                           "x-f-methods": methods}).items():
        at.session_state[key] = value
    at.run()
    at.button(key="x-f-run").click().run()
    assert_clean(at)
    return at


def random_matrix(users: int = 30, items: int = 12, density: float = 0.3,
                  seed: int = 0) -> sp.csr_matrix:
    """Seeded random binary interactions ``[users, items]`` (float32 CSR): each cell is 1 with
    probability ``density``, except the last item's, which nobody interacted with."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < density).astype(np.float32)
    dense[:, -1] = 0.0  # one item nobody interacted with
    return sp.csr_matrix(dense)
