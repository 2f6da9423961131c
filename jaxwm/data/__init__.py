"""Datasets: the validated in-memory Dataset, streaming datasets for data
that does not fit in memory, loaders by name, and splits."""

from jaxwm.data.dataset import Dataset
from jaxwm.data.loaders import load
from jaxwm.data.loaders import load_splits
from jaxwm.data.splits import disjoint_split
from jaxwm.data.splits import stratified_indices
from jaxwm.data.splits import stratified_subset
from jaxwm.data.streaming import StreamingDataset
from jaxwm.data.synthetic import synthetic

__all__ = [
    "Dataset",
    "disjoint_split",
    "load",
    "load_splits",
    "stratified_indices",
    "stratified_subset",
    "StreamingDataset",
    "synthetic",
]
