"""MUSHRA listening tests (ITU-R BS.1534-3) served from a database, fed by encodec-bench run folders."""

__version__ = "0.1.0"
