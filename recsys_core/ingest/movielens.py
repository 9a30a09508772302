"""Known MovieLens file layouts, recognised from their shape (not only their names).

Header-less MovieLens files get their documented column names so mappings, attribute names and
reports read naturally (``genres`` rather than ``column_3``).
"""

from __future__ import annotations

from pathlib import PurePath

import pandas as pd

#: Genre flag columns of MovieLens-100K ``u.item`` (the order of ``u.genre``).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western")

U_ITEM_COLUMNS = ["movie_id", "title", "release_date", "video_release_date", "imdb_url",
                  *(f"genre_{g}" for g in ML100K_GENRES)]


def movielens_layout(role: str, delimiter: str | None, header: bool, columns: list[str],
                     sample: pd.DataFrame, name: str) -> tuple[str, list[str]] | None:
    """``(format_name, column_names)`` when a header-less file matches a MovieLens layout.

    Args:
        role (str): ``interactions``, ``items`` or ``users``.
        delimiter (str, optional): Detected separator.
        header (bool): Whether the file has a header row.
        columns (list[str]): Current column names.
        sample (pandas.DataFrame): First rows as strings.
        name (str): Display name (only its base name is used, as a hint).
    """
    if header:
        return None
    base = PurePath(name.replace("\\", "/")).name.lower()
    n = len(columns)
    if role == "interactions" and n == 4 and delimiter in ("\t", "::"):
        fmt = "movielens u.data" if delimiter == "\t" else "movielens ratings.dat"
        if base in ("u.data", "ratings.dat") or base.startswith("u") and base.endswith((".base", ".test")):
            return fmt, ["user_id", "item_id", "rating", "timestamp"]
        return None
    if role == "items" and delimiter == "|" and n == len(U_ITEM_COLUMNS):
        if sample.iloc[:, -19:].isin(["0", "1"]).all().all():
            return "movielens u.item", list(U_ITEM_COLUMNS)
    if role == "items" and delimiter == "::" and n == 3:
        return "movielens movies.dat", ["movie_id", "title", "genres"]
    if role == "users" and n == 5:
        gender = [sample.iloc[:, j].isin(["M", "F"]).all() for j in range(n)]
        if delimiter == "|" and gender[2]:
            return "movielens u.user", ["user_id", "age", "gender", "occupation", "zip_code"]
        if delimiter == "::" and gender[1]:
            return "movielens users.dat", ["user_id", "gender", "age", "occupation", "zip_code"]
    return None
