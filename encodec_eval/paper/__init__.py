"""The EnCodec paper's published tables (Défossez et al. 2022, arXiv 2210.13438) as tidy pandas DataFrames.

Our results are only interpretable next to what the paper reports, so the paper's numbers live in the package as
data (``data/*.csv`` plus ``data/tables.yaml`` with captions, sections, units and the source they were read
from) rather than being retyped in notebooks.
"""

from encodec_eval.paper.tables import (
    PaperTable,
    UnknownTableError,
    describe_table,
    load_all_tables,
    load_table,
    paper_reference,
    table_ids,
)

__all__ = [
    "PaperTable",
    "UnknownTableError",
    "describe_table",
    "load_all_tables",
    "load_table",
    "paper_reference",
    "table_ids",
]
