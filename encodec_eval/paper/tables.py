"""Loader for the paper's tables stored as CSV with a YAML index of captions, sections, units and provenance."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml

_DATA_PACKAGE = "encodec_eval.paper.data"
_INDEX = "tables.yaml"


class UnknownTableError(KeyError):
    """Raised for a table name that is not one of the paper's stored tables."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class PaperTable:
    """One published table: its data and everything needed to cite it."""

    table_id: str
    label: str
    section: str
    title: str
    caption: str
    units: dict[str, str]
    source: str
    cross_check: str
    frame: pd.DataFrame
    paper: dict[str, str]


def _data_dir() -> Any:
    return resources.files(_DATA_PACKAGE)


@lru_cache(maxsize=1)
def _index() -> dict[str, Any]:
    with _data_dir().joinpath(_INDEX).open("r", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def table_ids() -> list[str]:
    """The stored tables' ids: the EnCodec paper's in its order (table1 .. table5, tableA2 .. tableA4), then the
    other papers' (dac_table3)."""
    return list(_index()["tables"])


def paper_reference(name: str = "") -> dict[str, str]:
    """Authors, title, arXiv id, URL and venue of the EnCodec paper, or of the paper table ``name`` comes from, plus
    where its text was read."""
    if name:
        return describe_table(name).paper
    return {**_index()["paper"], "source_read": _index()["source_read"]}


def _normalise(name: str) -> str:
    """'Table A.4', 'a4', 'tableA4', '1', 'Table 1' -> 'tableA4' / 'table1'; 'DAC Table 3' -> 'dac_table3'."""
    key = re.sub(r"[\s._-]", "", str(name)).lower()
    prefix = ""
    for paper in _index().get("other_papers", {}):
        if key.startswith(paper):
            prefix, key = f"{paper}_", key.removeprefix(paper)
    key = key.removeprefix("table")
    return prefix + ("table" + key.upper() if key[:1] == "a" else "table" + key)


def describe_table(name: str) -> PaperTable:
    """The table called ``name`` ('table2', 'Table A.3', '5', ...) with caption, section, units and source."""
    table_id = _normalise(name)
    meta = _index()["tables"].get(table_id)
    if meta is None:
        raise UnknownTableError(f"unknown paper table {name!r}; known: {', '.join(table_ids())}")
    with _data_dir().joinpath(meta["file"]).open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype={"note": "string"})
    frame["note"] = frame["note"].fillna("")
    paper = _index()["other_papers"][meta["paper"]] if "paper" in meta else paper_reference()
    frame.attrs.update(
        table_id=table_id,
        label=meta["label"],
        section=meta["section"],
        caption=" ".join(meta["caption"].split()),
        units=dict(meta["units"]),
        source=" ".join(paper["source_read"].split()),
        cross_check=meta["cross_check"],
        paper=f"{paper['authors']}, {paper['title']} (arXiv {paper['arxiv']})",
    )
    return PaperTable(
        table_id=table_id,
        label=meta["label"],
        section=meta["section"],
        title=meta["title"],
        caption=frame.attrs["caption"],
        units=dict(meta["units"]),
        source=frame.attrs["source"],
        cross_check=meta["cross_check"],
        frame=frame,
        paper=dict(paper),
    )


def load_table(name: str) -> pd.DataFrame:
    """The table as a tidy DataFrame; caption, section, units and source are in ``frame.attrs``."""
    return describe_table(name).frame


def load_all_tables() -> dict[str, pd.DataFrame]:
    """Every stored table, keyed by id."""
    return {table_id: load_table(table_id) for table_id in table_ids()}
