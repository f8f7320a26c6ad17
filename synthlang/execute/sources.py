"""Loading seed rows from sources, with errors that name the file, row and field.

Loaders (see docs/language.md, "Sources"):

* ``jsonl("file.jsonl")`` — one JSON object per line; rows are line numbers.
  A UTF-8 byte-order mark is accepted; a lone UTF-16 surrogate escape
  (``"\ud800"``) is an error naming the row and field.
* ``csv("file.csv")`` — a header line, then rows; cells are converted to the
  declared types; rows are line numbers (the header is line 1). A row with
  fewer or more cells than the header, an unclosed quote and a duplicate
  column name are errors (no cell becomes null, no rows merge, no column wins
  silently).
* ``parquet("file.parquet")`` — columns read with pyarrow; rows are 1-based
  row indexes.
* ``hf("folder")`` — a Hugging Face dataset saved with ``save_to_disk``
  (``datasets.load_from_disk``); ``split="train"`` picks a split of a
  ``DatasetDict``; rows are 1-based indexes.
* ``sql("SELECT ...")`` — a read-only DuckDB query over the store of earlier
  runs: the store the run writes to (``synth run --db``, default
  ``.synth/synth.duckdb``), or ``db="path.duckdb"`` relative to the recipe.
  It is exactly one ``SELECT`` (or ``WITH ... SELECT``), run on its own
  connection opened read-only with ``enable_external_access=false``
  (:mod:`synthlang.store.readonly`): no writes, no DDL, no file reads or
  writes, no ``ATTACH``, no extension installs.

Every loader takes ``limit=``, ``offset=``, ``id=FIELD`` (the field that
identifies a seed; duplicates are an error) and ``max_field_bytes=`` (default
1,000,000: a text field larger than this is an error naming the row and field,
because it would blow up every prompt that uses it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synthlang.errors import DataError, StoreError
from synthlang.expr import ExprError, evaluate
from synthlang.plan.program import SourceSpec

MAX_FIELD_BYTES = 1_000_000
"""Default size limit of one field value (UTF-8 bytes); ``max_field_bytes=`` changes it."""

LOADERS = ("jsonl", "csv", "parquet", "hf", "sql")
"""Source loaders, in the order docs/language.md lists them."""

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "number": (int, float), "bool": (bool,), "list": (list,),
}


def _check_type(value: Any, t: str) -> bool:
    if t in ("any", "json") or value is None:
        return True
    if t in ("int", "float", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _PY_TYPES.get(t, (object,)))


def _type_name(v: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "object"}.get(type(v), type(v).__name__)


def load_source(spec: SourceSpec, params: dict[str, Any], store: Any = None) -> list[dict[str, Any]]:
    """Read a source's rows, check declared fields, compute derived fields.

    Args:
        spec: the resolved source.
        params: the recipe's params (derived fields may use them).
        store: the run's :class:`~synthlang.store.Store`; ``sql`` sources
            query it unless they name their own ``db=``.

    Returns:
        Rows as dicts holding the declared and derived fields (other keys in
        the file are dropped), after ``offset`` and ``limit``.

    Raises:
        DataError: a missing or unreadable file, malformed data, a missing
            field, a wrong type, a field over ``max_field_bytes``, bytes that
            are not UTF-8, a duplicate id or an empty source — naming the
            file, the row and the field.
    """
    shown = str(spec.path) if spec.path is not None else f"sql source '{spec.name}'"
    offset = int(spec.args.get("offset") or 0)
    limit = spec.args.get("limit")
    records = _records(spec, shown, store)
    rows: list[dict[str, Any]] = []
    ids: dict[Any, int] = {}
    id_field = spec.args.get("id")
    max_bytes = int(spec.args.get("max_field_bytes") or MAX_FIELD_BYTES)
    n = 0
    for rowno, rec in records:
        n += 1
        if n <= offset:
            continue
        if limit is not None and len(rows) >= int(limit):
            break
        row = _typed_row(spec, rec, shown, rowno, params, max_bytes)
        if id_field is not None:
            key = row.get(id_field)
            if key is None:
                raise DataError("the id field is null", shown, row=rowno, field=id_field)
            hkey = json.dumps(key, sort_keys=True, default=str)
            if hkey in ids:
                raise DataError(f"duplicate id {key!r} (first seen at row {ids[hkey]})", shown, row=rowno, field=id_field)
            ids[hkey] = rowno
        rows.append(row)
    if not rows:
        what = "the file has no rows" if n == 0 else f"no rows left after offset={offset}"
        raise DataError(f"the source is empty: {what}", shown)
    return rows


def count_rows(spec: SourceSpec, store: Any = None) -> int | None:
    """Rows a source will yield after offset/limit, without type checks; ``None`` when unknown.

    Used by ``synth plan``; it reads the file (or runs ``SELECT count(*)``) but never fails.
    """
    offset = int(spec.args.get("offset") or 0)
    limit = spec.args.get("limit")
    try:
        if spec.loader == "parquet" and spec.path is not None:
            import pyarrow.parquet as pq

            total = pq.ParquetFile(spec.path).metadata.num_rows
        elif spec.loader == "sql":
            total = _sql_count(spec, store)
        else:
            total = 0
            for _ in _records(spec, str(spec.path), store):
                total += 1
                if limit is not None and total >= int(limit) + offset:
                    break
    except Exception:  # noqa: BLE001 - an estimate never fails the plan; `run` reports the real error
        return None
    if total is None:
        return None
    n = max(total - offset, 0)
    return min(n, int(limit)) if limit is not None else n


def source_stats(spec: SourceSpec, store: Any = None, sample: int = 50) -> tuple[int | None, int]:
    """(rows after offset/limit or ``None`` when unknown, mean characters per row of the first ``sample``).

    For ``synth plan``; never raises.
    """
    n = count_rows(spec, store)
    chars = seen = 0
    try:
        for _, rec in _records(spec, str(spec.path), store):
            chars += len(json.dumps({f: rec.get(f) for f in spec.fields}, ensure_ascii=False, default=str))
            seen += 1
            if seen >= sample:
                break
    except Exception:  # noqa: BLE001 - an estimate never fails the plan
        pass
    return n, (chars // seen if seen else 0)


# ------------------------------------------------------------------ per format
def _records(spec: SourceSpec, shown: str, store: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if spec.loader == "sql":
        return _sql_records(spec, shown, store)
    if spec.path is None:
        raise DataError(f"loader {spec.loader}() needs a path", shown)
    if not spec.path.exists():
        raise DataError("file not found", shown)
    if spec.loader == "jsonl":
        return _jsonl_records(spec.path, shown)
    if spec.loader == "csv":
        return _csv_records(spec, shown)
    if spec.loader == "parquet":
        return _parquet_records(spec, shown)
    if spec.loader == "hf":
        return _hf_records(spec, shown)
    raise DataError(f"loader {spec.loader} is not supported", shown)


def _jsonl_records(path: Path, shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", shown) from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")   # a byte-order mark is accepted
            except UnicodeDecodeError as exc:
                raise DataError(f"bytes that are not UTF-8 at byte {exc.start} of the line", shown, row=lineno) from None
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", shown, row=lineno) from None
            except RecursionError:
                raise DataError("malformed JSON: nested too deeply", shown, row=lineno) from None
            if not isinstance(obj, dict):
                raise DataError(f"each line must be a JSON object, not {_type_name(obj)}", shown, row=lineno)
            if "\\ud" in line or "\\uD" in line:   # JSON escapes can spell lone UTF-16 surrogates
                bad = _surrogate_field(obj)
                if bad is not None:
                    raise DataError("a lone UTF-16 surrogate escape (such as \\ud800) is not text; "
                                    "fix the escape or drop the field", shown, row=lineno, field=bad)
            yield lineno, obj


def _surrogate_field(obj: dict[str, Any]) -> str | None:
    """The first top-level field whose value (at any depth) holds a lone surrogate, or ``None``."""
    def bad(v: Any) -> bool:
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
            return False
        if isinstance(v, list):
            return any(bad(x) for x in v)
        if isinstance(v, dict):
            return any(bad(k) or bad(x) for k, x in v.items())
        return False
    for k, v in obj.items():
        if bad(k) or bad(v):
            return k
    return None


def _decode_whole(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"bytes that are not UTF-8 at byte {exc.start}", shown, row=line) from None


def _csv_records(spec: SourceSpec, shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import csv
    import io

    try:
        data = spec.path.read_bytes()  # type: ignore[union-attr]
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", shown) from None
    text = _decode_whole(data, shown)
    if "\x00" in text:
        raise DataError("the file contains a NUL byte (not a CSV text file?)", shown, row=text.count("\n", 0, text.index("\x00")) + 1)
    # strict: an unclosed quote is an error, not a cell that swallows the rest of the file
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    started = 1
    try:
        header = next(reader, None) or []
        if not header:
            return
        seen: dict[str, int] = {}
        for i, h in enumerate(header, start=1):
            if h in seen:
                raise DataError(f"duplicate column '{h}' in the header (columns {seen[h]} and {i}); "
                                "rename one so that no column silently wins", shown, row=1, field=h)
            seen[h] = i
        for f in spec.fields:
            if f not in header:
                raise DataError(f"no column '{f}' in the header ({', '.join(header)})", shown, row=1, field=f)
        while True:
            started = reader.line_num + 1
            cells = next(reader, None)
            if cells is None:
                break
            lineno = reader.line_num
            if not cells:
                continue   # a blank line
            if len(cells) != len(header):
                short = "short row: " if len(cells) < len(header) else ""
                raise DataError(f"{short}{len(cells)} cells but the header has {len(header)} columns", shown, row=lineno)
            rec = dict(zip(header, cells, strict=True))
            yield lineno, {f: _convert_text(rec.get(f), t, shown, lineno, f) for f, t in spec.fields.items()}
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise DataError("unclosed quote: the quoted cell that starts on this line runs to the end of the file",
                            shown, row=started) from None
        raise DataError(f"malformed CSV: {exc}", shown, row=reader.line_num) from None


def _convert_text(value: Any, t: str, shown: str, lineno: int, field: str) -> Any:
    """CSV cells (and SQL text values) are text; convert to the declared type."""
    if value is None or not isinstance(value, str):
        return value
    try:
        if t == "int":
            return int(value)
        if t in ("float", "number"):
            return float(value)
        if t == "bool":
            low = value.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if t in ("list", "json"):
            return json.loads(value)
    except ValueError:
        shown_v = value if len(value) <= 40 else value[:40] + "..."
        raise DataError(f"expected {t}, got {shown_v!r}", shown, row=lineno, field=field) from None
    return value


def _parquet_records(spec: SourceSpec, shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(spec.path)  # type: ignore[arg-type]
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file: {str(exc).splitlines()[0]}", shown) from None
    columns = pf.schema_arrow.names
    for f in spec.fields:
        if f not in columns:
            raise DataError(f"no column '{f}' in the file ({', '.join(columns)})", shown, field=f)
    rowno = 0
    try:
        for batch in pf.iter_batches(columns=list(spec.fields) or None):
            for rec in batch.to_pylist():
                rowno += 1
                yield rowno, rec
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"malformed Parquet data: {str(exc).splitlines()[0]}", shown, row=rowno + 1) from None


def _hf_records(spec: SourceSpec, shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import datasets

    try:
        ds: Any = datasets.load_from_disk(str(spec.path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(f"not a dataset saved with save_to_disk: {str(exc).splitlines()[0]}", shown) from None
    split = spec.args.get("split")
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise DataError(f"the dataset has splits {', '.join(ds)}; pick one with split=", shown)
            split = next(iter(ds))
        if split not in ds:
            raise DataError(f"no split '{split}' (splits: {', '.join(ds)})", shown)
        ds = ds[split]
    elif split is not None and split != str(getattr(ds, "split", split)):
        raise DataError(f"the dataset is a single split ({ds.split}); remove split=", shown)
    for f in spec.fields:
        if f not in ds.column_names:
            raise DataError(f"no column '{f}' in the dataset ({', '.join(ds.column_names)})", shown, field=f)
    yield from enumerate(ds, start=1)


def _sql_target(spec: SourceSpec, store: Any) -> Path:
    """The database file a ``sql`` source reads; the run's own store lets go of its file first."""
    from synthlang.store import DEFAULT_DB

    db = spec.args.get("db")
    path = Path(db) if db is not None else Path(store.path) if store is not None else Path(DEFAULT_DB)
    if store is not None and Path(store.path).resolve() == path.resolve():
        if hasattr(store, "flush"):
            store.flush(release=False)   # rows the writer still buffers are what the query should see
        store.release(force=True)   # the query gets its own read-only connection, no external access
        return path
    if not path.exists():
        if db is not None:
            raise DataError("no database file: run the recipe that fills it first", str(db))
        raise DataError(f"no database file at {DEFAULT_DB}: run a recipe first or pass db=", f"sql source '{spec.name}'")
    return path


def _sql_query(spec: SourceSpec, sql: str, shown: str, store: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only SELECT (see :mod:`synthlang.store.readonly`); errors name the source."""
    import contextlib

    from synthlang.store.readonly import query_readonly

    # the run's node threads share the store's connection: none of them may reopen it while this query
    # holds its own read-only connection to the same file (DuckDB refuses two configurations in one process)
    with getattr(store, "_db", None) or contextlib.nullcontext():
        path = _sql_target(spec, store)
        try:
            return query_readonly(path, sql)
        except StoreError as exc:
            raise DataError(f"SQL error: {exc}", shown) from None


def _sql_records(spec: SourceSpec, shown: str, store: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    cols, rows = _sql_query(spec, str(spec.args["query"]), shown, store)
    for f in spec.fields:
        if f not in cols:
            raise DataError(f"the query returns no column '{f}' (columns: {', '.join(cols)})", shown, field=f)
    for i, r in enumerate(rows, start=1):
        rec = dict(zip(cols, r, strict=False))
        yield i, {f: _convert_text(rec.get(f), t, shown, i, f) if t != "str" else rec.get(f) for f, t in spec.fields.items()}


def _sql_count(spec: SourceSpec, store: Any) -> int | None:
    from synthlang.store.readonly import select_problem

    if select_problem(str(spec.args["query"])) is not None:
        return None
    _, rows = _sql_query(spec, f"SELECT count(*) FROM ({spec.args['query']}) AS q", "", store)
    return int(rows[0][0])


# ------------------------------------------------------------------ rows
def _typed_row(spec: SourceSpec, obj: dict[str, Any], shown: str, lineno: int, params: dict[str, Any],
               max_bytes: int = MAX_FIELD_BYTES) -> dict[str, Any]:
    """Check declared fields of one record and compute derived fields."""
    row: dict[str, Any] = {}
    for f, t in spec.fields.items():
        if f not in obj:
            raise DataError("missing field", shown, row=lineno, field=f)
        v = obj[f]
        if not _check_type(v, t):
            raise DataError(f"expected {t}, got {_type_name(v)}", shown, row=lineno, field=f)
        if isinstance(v, str) and len(v) > max_bytes // 4 and len(v.encode("utf-8")) > max_bytes:
            raise DataError(f"the value is {len(v.encode('utf-8')):,} bytes, over the limit of {max_bytes:,} "
                            "(raise it with max_field_bytes= on the source)", shown, row=lineno, field=f)
        row[f] = v
    for f, e in spec.derived:
        try:
            row[f] = evaluate(e, row, params)
        except ExprError as exc:
            raise DataError(f"derived field failed: {exc}", shown, row=lineno, field=f) from None
    return row
