"""The paper tables as CSV files and their YAML index (package data, read by encodec_eval.paper.tables)."""
