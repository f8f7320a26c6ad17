"""The DuckDB lineage store (the only place duckdb is imported)."""

from synthlang.store.store import DEFAULT_DB, SCHEMA_VERSION, Store

__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "Store"]
