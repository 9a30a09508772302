"""RecScope core library: ingestion, heterogeneous graphs, GNN + language-model recommenders,
evaluation and explanations. Never imports streamlit."""

from .dataset import Dataset, UnknownIdError

__version__ = "0.1.0"
__all__ = ["Dataset", "UnknownIdError", "__version__"]
