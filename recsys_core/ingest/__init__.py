"""Data ingestion: raw interaction/metadata files to a validated :class:`~recsys_core.Dataset`.

Modules: :mod:`.readers` (sources, encodings, delimiters, headers), :mod:`.columns` (column
mapping), :mod:`.timestamps`, :mod:`.interactions`, :mod:`.items`, :mod:`.users` (user
attributes), :mod:`.report` and
:mod:`.load` (the public :func:`load_dataset`).
"""

from .load import DEFAULT_MAX_IDS, DEFAULT_MAX_ROWS, dataset_name, load_dataset
from .readers import Source
from .report import POLICIES, FileReport, IngestionReport, Problem
from .timestamps import ParsedTimestamps, parse_timestamps

__all__ = [
    "DEFAULT_MAX_IDS",
    "DEFAULT_MAX_ROWS",
    "POLICIES",
    "FileReport",
    "IngestionReport",
    "ParsedTimestamps",
    "Problem",
    "Source",
    "dataset_name",
    "load_dataset",
    "parse_timestamps",
]
