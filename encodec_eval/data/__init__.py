"""Evaluation data: the embedded default set and any folder or manifest that replaces it."""

from encodec_eval.data.dataset import DataError, Dataset, Item, default_data_dir, first_per_category, load_dataset

__all__ = ["DataError", "Dataset", "Item", "default_data_dir", "first_per_category", "load_dataset"]
