"""Read-only SQL for ``sql(...)`` sources: one SELECT, on a connection with no file or network access.

A shared recipe is untrusted input (docs/reliability.md, "Untrusted recipes"). A ``sql`` source may
only read the store: :func:`select_problem` parses the text with DuckDB's own parser
(``duckdb.extract_statements``) and accepts exactly one ``SELECT`` statement (``WITH ... SELECT``,
``FROM t``, ``VALUES``, set operations included); :func:`query_readonly` runs it on a fresh
connection opened with ``read_only=True`` and ``enable_external_access=false``, so even a SELECT
cannot read files (``read_text``, ``read_csv``), attach databases or load extensions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb

from synthlang.errors import StoreError, StoreLocked


def select_problem(sql: str) -> str | None:
    """Why ``sql`` is not one read-only SELECT, or ``None`` when it is.

    Args:
        sql: the query text of a ``sql(...)`` source.

    Returns:
        A sentence for a diagnostic (``"2 statements: ..."``, ``"a DELETE statement: ..."``,
        ``"not valid SQL: ..."``), or ``None``.
    """
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        return f"not valid SQL: {str(exc).splitlines()[0]}"
    if not stmts:
        return "no SQL statement"
    if len(stmts) > 1:
        kinds = ", ".join(_kind(s) for s in stmts)
        return f"{len(stmts)} statements ({kinds}); a sql source runs exactly one SELECT"
    if stmts[0].type != duckdb.StatementType.SELECT:
        return f"a {_kind(stmts[0])} statement; a sql source runs only SELECT (or WITH ... SELECT)"
    return None


def _kind(stmt: Any) -> str:
    return str(stmt.type).rsplit(".", 1)[-1]


def query_readonly(path: str | Path, sql: str, wait_s: float = 10.0) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one SELECT on ``path`` through a read-only connection with no external access.

    Args:
        path: the DuckDB file.
        sql: the query; checked with :func:`select_problem` first.
        wait_s: seconds to wait while a writer in another process holds the file.

    Returns:
        (column names, rows).

    Raises:
        StoreError: the text is not one SELECT, or DuckDB refuses it (unknown table,
            a file function blocked by ``enable_external_access=false``, ...).
        StoreLocked: another process kept the file locked for ``wait_s`` seconds.
    """
    problem = select_problem(sql)
    if problem is not None:
        raise StoreError(problem)
    con = _open(Path(path), wait_s)
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description or []]
        return cols, cur.fetchall()
    except duckdb.Error as exc:
        raise StoreError(str(exc).splitlines()[0]) from None
    finally:
        con.close()


def _open(path: Path, wait_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})
        except duckdb.IOException as exc:
            msg = str(exc).lower()
            if "lock" not in msg and "conflicting" not in msg:
                raise StoreError(f"cannot open {path}: {exc}") from None
            if time.monotonic() >= deadline:
                raise StoreLocked(f"{path} is held by another process that writes to it; "
                                  "a sql source reads it once that process lets go") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        time.sleep(0.05)
