"""Exports: JSONL, a Hugging Face dataset (``save_to_disk``) or Parquet.

Text goes out byte-identical (``ensure_ascii=False``, UTF-8 everywhere).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthlang.errors import ConfigError


def _records(rows: Sequence[tuple[str, dict[str, Any]]], options: dict[str, Any]) -> list[dict[str, Any]]:
    fields = options.get("fields")
    with_id = options.get("row_id", True)
    out = []
    for rid, data in rows:
        rec = {k: data.get(k) for k in fields} if fields else dict(data)
        if with_id:
            rec = {"row_id": rid, **rec}
        out.append(rec)
    return out


def export_rows(rows: Sequence[tuple[str, dict[str, Any]]], path: Path, fmt: str, options: dict[str, Any] | None = None) -> int:
    """Write rows to ``path``.

    Args:
        rows: ``(row_id, fields)`` pairs.
        path: a file (jsonl, parquet) or a folder (hf).
        fmt: ``jsonl``, ``hf`` or ``parquet``.
        options: ``fields`` (list of field names to keep), ``row_id`` (bool, default true).

    Returns:
        The number of rows written.

    Raises:
        ConfigError: unknown format or unwritable path.
    """
    recs = _records(rows, options or {})
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for r in recs:
                    f.write(jsonl_line(r))
            tmp.replace(path)
        elif fmt in ("hf", "parquet"):
            import pyarrow as pa

            table = pa.Table.from_pylist(normalise_columns(recs)) if recs else pa.table({})
            if fmt == "parquet":
                import pyarrow.parquet as pq

                pq.write_table(table, str(path))
            else:
                import datasets
                from datasets import Dataset

                datasets.disable_progress_bars()
                ds = Dataset(table)
                if path.exists():
                    shutil.rmtree(path)
                ds.save_to_disk(str(path))
        else:
            raise ConfigError(f"unknown export format '{fmt}' (jsonl, hf, parquet)")
    except OSError as exc:
        raise ConfigError(f"cannot write export {path}: {exc.strerror or exc}") from None
    return len(recs)


_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def jsonl_line(rec: dict[str, Any]) -> str:
    """One JSONL line: UTF-8 text as is, except the characters that readers splitting on Unicode
    line boundaries (``str.splitlines``) would break on, which are JSON-escaped (they decode back
    to the same characters)."""
    line = json.dumps(rec, ensure_ascii=False)
    for ch, esc in _LINE_BREAKS.items():
        if ch in line:
            line = line.replace(ch, esc)
    return line + "\n"


def normalise_columns(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make every column one Arrow type: mixed columns become JSON text."""
    kinds: dict[str, set[type]] = {}
    for r in recs:
        for k, v in r.items():
            if v is not None:
                kinds.setdefault(k, set()).add(type(v))
    mixed = {k for k, ts in kinds.items() if len(ts - {int, float}) > 0 and len(ts) > 1}
    if not mixed:
        return recs
    return [{k: (json.dumps(v, ensure_ascii=False) if k in mixed and v is not None and not isinstance(v, str) else v)
             for k, v in r.items()} for r in recs]
