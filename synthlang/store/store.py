"""The DuckDB store: runs, steps, LLM calls, rows and lineage in one file.

This is the only module that imports duckdb; its exceptions become
:class:`~synthlang.errors.StoreError`. Every finished call is committed
together with its rows and lineage edges in one small transaction, so a run
killed at any moment keeps all finished work.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from synthlang.errors import SchemaVersionMismatch, StoreError, StoreLocked
from synthlang.plan.keys import CACHE_VERSION

SCHEMA_VERSION = 1
DEFAULT_DB = Path(".synth") / "synth.duckdb"
_SCHEMA = Path(__file__).with_name("schema.sql")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _dumps(v: Any) -> str | None:
    if v is None:
        return None
    return json.dumps(v, ensure_ascii=False, default=str)


def _is_lock_error(exc: Exception) -> bool:
    msg = str(exc).lower()
    return "lock" in msg or "conflicting" in msg


def _connect(path: Path, read_only: bool, wait_s: float = 0.0) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying for up to ``wait_s`` seconds while another process holds its lock.

    Raises:
        StoreLocked: still locked after ``wait_s`` seconds.
        StoreError: any other failure to open.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            # readers get no file system access: `synth query` can neither write files (COPY ... TO)
            # nor read any outside the database (read_csv, ATTACH, extensions)
            return duckdb.connect(str(path), read_only=read_only,
                                  config={"enable_external_access": False} if read_only else {})
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"cannot open {path}: {exc}") from None
            if time.monotonic() >= deadline:
                raise StoreLocked(
                    f"{path} is busy: a 'synth run' is committing to it and did not let go within {wait_s:.0f} s. "
                    "Try again in a moment, or read a copy: cp the file and pass --db COPY."
                ) from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


class _RunLock:
    """An advisory lock (``<db>.lock``) held by the one process that writes a store.

    DuckDB's own file lock is only held while a writer commits (see
    :class:`Store`), so this lock is what keeps two ``synth run`` s off the same
    file. The kernel drops it when the process dies, even by SIGKILL.
    """

    def __init__(self, db: Path) -> None:
        # keyed on the resolved path: two writers through a symlink (or `..`) find the same lock file
        db = db.resolve()
        self.path = db.with_name(db.name + ".lock")
        self._fh: Any = None

    def acquire(self) -> None:
        import fcntl

        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise StoreLocked(f"another synthlang process (pid {holder}) is writing to {self.path.with_suffix('')}; "
                              "wait for it to finish or pass a different --db") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Store:
    """A synthlang DuckDB file.

    Args:
        path: the database file (created with its folder if missing, unless read-only).
        read_only: open for reading only; writes and DDL are refused by DuckDB.

    Raises:
        StoreLocked: another process holds the file for writing.
        SchemaVersionMismatch: the file was written by an incompatible version.
        StoreError: any other DuckDB failure.
    """

    #: seconds a writer may keep DuckDB's file lock after a commit before it lets go,
    #: so that ``synth query`` in another terminal gets in between commits.
    HOLD_S = 0.5
    #: seconds a reader waits for a committing writer; a writer waits longer for readers.
    READ_WAIT_S = 10.0
    WRITE_WAIT_S = 120.0

    def __init__(self, path: str | Path = DEFAULT_DB, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opened_at = 0.0
        self._depth = 0
        self._run_lock: _RunLock | None = None
        if read_only:
            if not self.path.exists():
                raise StoreError(f"no database at {self.path}: run a recipe first (synth run RECIPE), or pass --db PATH")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._run_lock = _RunLock(self.path)
            self._run_lock.acquire()
        try:
            if not read_only:
                self._init_schema()
            self._check_version()
        except BaseException:
            self.close()
            raise

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, opened on first use (a reader holds it until :meth:`close`)."""
        if self._con is None:
            self._con = _connect(self.path, self.read_only, self.READ_WAIT_S if self.read_only else self.WRITE_WAIT_S)
            self._opened_at = time.monotonic()
        return self._con

    def release(self, force: bool = False) -> None:
        """Let go of DuckDB's file lock if a writer has held it ``HOLD_S`` seconds (or ``force``).

        Called after each commit, so readers in other processes get in between
        commits; the advisory run lock stays held.
        """
        if self._con is None or self.read_only or self._depth:
            return
        if force or time.monotonic() - self._opened_at >= self.HOLD_S:
            try:
                self._con.close()
            except duckdb.Error:
                pass
            self._con = None

    # ----------------------------------------------------------------- schema
    def _init_schema(self) -> None:
        # one transaction: a process killed while creating a new file leaves no half-made schema
        try:
            self.con.execute("BEGIN TRANSACTION")
            self.con.execute(_SCHEMA.read_text(encoding="utf-8"))
            have = self.con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if have is None:
                self.con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('cache_version', ?)",
                                 [str(SCHEMA_VERSION), str(CACHE_VERSION)])
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            raise StoreError(f"cannot initialise {self.path}: {exc}") from None

    def _check_version(self) -> None:
        try:
            rows = dict(self.con.execute("SELECT key, value FROM meta").fetchall())
        except duckdb.Error:
            raise StoreError(f"{self.path} is not a synthlang database") from None
        have = rows.get("schema_version")
        if have is None or int(have) != SCHEMA_VERSION:
            raise SchemaVersionMismatch(
                f"{self.path} has schema version {have or '?'}, this synthlang needs {SCHEMA_VERSION}; "
                "use a new --db file")
        cache = rows.get("cache_version")
        if not self.read_only and cache is not None and int(cache) != CACHE_VERSION:
            raise SchemaVersionMismatch(
                f"{self.path} holds a call cache of version {cache}, this synthlang computes cache keys with version "
                f"{CACHE_VERSION}: none of its calls would be reused. Run with a new --db file (the old one stays "
                "readable with synth query), or delete it to start over")

    def close(self) -> None:
        if self._con is not None:
            try:
                self._con.close()
            except duckdb.Error:
                pass
            self._con = None
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------- runs
    def begin_run(self, run_id: str, recipe: str, recipe_path: str, fingerprint: str,
                  params: dict[str, Any], argv: list[str], version: str) -> None:
        """Record the start of a run; runs left 'running' by a killed process become 'killed'.

        Only the holder of the run lock writes, so any other 'running' run is dead.
        """
        self.con.execute("UPDATE runs SET status='killed' WHERE status='running'")
        self.con.execute(
            "INSERT INTO runs (run_id, recipe, recipe_path, recipe_fingerprint, params, argv, status, started_at, synth_version)"
            " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
            [run_id, recipe, recipe_path, fingerprint, _dumps(params), _dumps(argv), _now(), version])
        self.release(force=True)

    def finish_run(self, run_id: str, status: str, stats: dict[str, Any]) -> None:
        """Record a run's end: status and totals (calls, tokens, wall seconds)."""
        self.con.execute(
            "UPDATE runs SET status=?, finished_at=?, calls_made=?, calls_cached=?, prompt_tokens=?,"
            " completion_tokens=?, wall_s=? WHERE run_id=?",
            [status, _now(), stats.get("calls_made", 0), stats.get("calls_cached", 0), stats.get("prompt_tokens", 0),
             stats.get("completion_tokens", 0), stats.get("wall_s"), run_id])
        self.release(force=True)

    def record_step(self, run_id: str, info: dict[str, Any]) -> None:
        """Insert or replace a step's stats for this run."""
        cols = ["run_id", "step", "fingerprint", "operator", "input", "model", "engine", "model_id", "template_hash",
                "options", "rows_in", "rows_out", "rows_failed", "calls_made", "calls_cached", "prompt_tokens",
                "completion_tokens", "started_at", "finished_at"]
        vals = [run_id] + [info.get(c) for c in cols[1:]]
        vals[cols.index("options")] = _dumps(info.get("options"))
        self.con.execute(f"INSERT OR REPLACE INTO steps ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)
        self.release()

    # ------------------------------------------------------------------ calls
    def get_batch_job(self, job_key: str) -> dict[str, Any] | None:
        """The Batch API job recorded under ``job_key`` (see table ``batch_jobs``), or ``None``."""
        row = self.con.execute("SELECT batch_id, input_file_id, endpoint, status, n_requests FROM batch_jobs WHERE job_key=?",
                               [job_key]).fetchone()
        if row is None:
            return None
        return dict(zip(("batch_id", "input_file_id", "endpoint", "status", "n_requests"), row, strict=True))

    def put_batch_job(self, job_key: str, batch_id: str, input_file_id: str, endpoint: str, status: str,
                      n_requests: int) -> None:
        """Record (or update) a Batch API job; committed at once so a crash right after keeps it."""
        now = _now()
        self.con.execute(
            "INSERT INTO batch_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_key) DO UPDATE SET "
            "batch_id=excluded.batch_id, input_file_id=excluded.input_file_id, status=excluded.status, "
            "updated_at=excluded.updated_at",
            [job_key, batch_id, input_file_id, endpoint, status, n_requests, now, now])

    def get_calls(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Finished calls (no error) among ``keys``, by key."""
        if not keys:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 1000):
            chunk = list(keys[i:i + 1000])
            res = self.con.execute(
                "SELECT call_key, response, finish_reason, prompt_tokens, completion_tokens, latency_s, logprobs"
                " FROM calls WHERE error IS NULL AND call_key IN (SELECT unnest(?))", [chunk]).fetchall()
            for k, resp, fr, pt, ct, lat, lps in res:
                out[k] = {"text": resp, "finish_reason": fr, "prompt_tokens": pt, "completion_tokens": ct,
                          "latency_s": lat, "logprobs": json.loads(lps) if lps else None}
        return out

    def get_calls_relaxed(self, relaxed_keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Finished calls (no error) by their key without ``max_tokens`` (``calls.key_nomax``).

        Returns:
            relaxed key → calls, each as :meth:`get_calls` gives it plus ``key`` and ``error``;
            those that stopped on their own first, then by fewest completion tokens (see
            :mod:`synthlang.plan.reuse` for when one may be reused).
        """
        out: dict[str, list[dict[str, Any]]] = {}
        for i in range(0, len(relaxed_keys), 1000):
            chunk = list(relaxed_keys[i:i + 1000])
            res = self.con.execute(
                "SELECT key_nomax, call_key, response, finish_reason, prompt_tokens, completion_tokens, latency_s, logprobs"
                " FROM calls WHERE error IS NULL AND key_nomax IN (SELECT unnest(?))"
                " ORDER BY finish_reason <> 'stop', completion_tokens, call_key", [chunk]).fetchall()
            for rk, k, resp, fr, pt, ct, lat, lps in res:
                out.setdefault(rk, []).append({
                    "key": k, "text": resp, "finish_reason": fr, "prompt_tokens": pt, "completion_tokens": ct,
                    "latency_s": lat, "logprobs": json.loads(lps) if lps else None, "error": None})
        return out

    def ok_rows(self, row_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Rows among ``row_ids`` that finished with status ok: id → data."""
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(row_ids), 1000):
            chunk = list(row_ids[i:i + 1000])
            for rid, data in self.con.execute(
                    "SELECT row_id, data FROM rows WHERE status='ok' AND row_id IN (SELECT unnest(?))", [chunk]).fetchall():
                out[rid] = json.loads(data)
        return out

    def failed_rows(self, row_ids: Sequence[str]) -> dict[str, str | None]:
        """Rows among ``row_ids`` stored with status failed: id → call key."""
        out: dict[str, str | None] = {}
        for i in range(0, len(row_ids), 1000):
            chunk = list(row_ids[i:i + 1000])
            for rid, key in self.con.execute(
                    "SELECT row_id, call_key FROM rows WHERE status='failed' AND row_id IN (SELECT unnest(?))",
                    [chunk]).fetchall():
                out[rid] = key
        return out

    def commit_result(self, run_id: str, step: str, call: dict[str, Any] | None, rows: Iterable[dict[str, Any]]) -> None:
        """Commit one finished call and the rows made from it, with their lineage, in one transaction.

        Args:
            run_id: the current run.
            step: the step's name.
            call: the call record (None for rows made without a new call).
            rows: row records: row_id, parents, data, status, error, raw, ... .
        """
        now = _now()
        con = self.con
        try:
            con.execute("BEGIN TRANSACTION")
            if call is not None:
                con.execute(
                    "INSERT OR REPLACE INTO calls (call_key, engine, model, messages, sampling, seed, sample_index, json_schema,"
                    " response, finish_reason, prompt_tokens, completion_tokens, latency_s, error, logprobs, meta, run_id, step,"
                    " created_at, key_nomax) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [call["key"], call["engine"], call["model"], _dumps(call["messages"]), _dumps(call["sampling"]),
                     call["seed"], call["sample_index"], _dumps(call.get("json_schema")), call.get("text"),
                     call.get("finish_reason"), call.get("prompt_tokens"), call.get("completion_tokens"),
                     call.get("latency_s"), call.get("error"), _dumps(call.get("logprobs")), _dumps(call.get("meta")),
                     run_id, step, now, call.get("key_nomax")])
            for r in rows:
                self._write_row(run_id, step, r, now)
            con.execute("COMMIT")
        except BaseException as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            if not isinstance(exc, duckdb.Error):
                raise
            raise StoreError(f"cannot write to {self.path}: {exc}") from None
        self.release()

    def _write_row(self, run_id: str, step: str, r: dict[str, Any], now: dt.datetime) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO rows (row_id, step, step_fingerprint, operator, round, sample_index, status, error, raw,"
            " call_key, model, template_hash, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [r["row_id"], step, r.get("step_fingerprint"), r.get("operator"), r.get("round", 0), r.get("sample_index", 0),
             r.get("status", "ok"), r.get("error"), r.get("raw"), r.get("call_key"), r.get("model"),
             r.get("template_hash"), _dumps(r.get("data")), now])
        for p in r.get("parents", ()):
            self.con.execute("INSERT OR IGNORE INTO lineage VALUES (?, ?, ?, ?)", [r["row_id"], p, step, r.get("round", 0)])
        self.con.execute("INSERT OR IGNORE INTO run_rows VALUES (?, ?, ?, ?)", [run_id, r["row_id"], step, False])

    def write_rows(self, run_id: str, step: str, rows: Sequence[dict[str, Any]]) -> None:
        """Commit rows made without a call (seeds, row operators) in one transaction."""
        self.commit_result(run_id, step, None, rows)

    def mark_reused(self, run_id: str, step: str, row_ids: Sequence[str]) -> None:
        """Link rows finished by an earlier run to this run."""
        if not row_ids:
            return
        self.con.execute(
            "INSERT OR IGNORE INTO run_rows SELECT ?, unnest(?), ?, true", [run_id, list(row_ids), step])

    def parents_of(self, row_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Lineage parents of each row among ``row_ids`` (sorted), by row id."""
        out: dict[str, list[str]] = {}
        for i in range(0, len(row_ids), 1000):
            chunk = list(row_ids[i:i + 1000])
            for c, p in self.con.execute(
                    "SELECT child_id, parent_id FROM lineage WHERE child_id IN (SELECT unnest(?)) ORDER BY parent_id",
                    [chunk]).fetchall():
                out.setdefault(c, []).append(p)
        return {k: tuple(v) for k, v in out.items()}

    def record_train(self, run_id: str, info: dict[str, Any]) -> None:
        """Record one external training command run between loop rounds (table ``train_runs``)."""
        self.con.execute(
            "INSERT INTO train_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run_id, info["loop"], info["round"], info["command"], info.get("data_path"), info.get("output_path"),
             info.get("inputs_digest"), info.get("exit_status"), info.get("output_tail"), info.get("seconds"), _now()])

    def finished_train(self, loop: str, round_: int, command: str, inputs_digest: str) -> bool:
        """Whether an earlier run already ran this training command on the same rows with exit status 0."""
        row = self.con.execute(
            "SELECT 1 FROM train_runs WHERE loop=? AND round=? AND command=? AND inputs_digest=? AND exit_status=0 LIMIT 1",
            [loop, round_, command, inputs_digest]).fetchone()
        return row is not None

    def record_export(self, run_id: str, step: str, path: str, fmt: str, rows: int) -> None:
        self.con.execute("INSERT INTO exports VALUES (?, ?, ?, ?, ?, ?)", [run_id, step, path, fmt, rows, _now()])

    def refresh_views(self, steps: dict[str, dict[str, str]]) -> None:
        """Create one view per step, ``step_<name>``, with the step's fields as typed columns (latest run)."""
        for name, fields in steps.items():
            cols = []
            for f, t in fields.items():
                sqlt = {"int": "BIGINT", "float": "DOUBLE", "number": "DOUBLE", "bool": "BOOLEAN"}.get(t)
                expr = f"(r.data->>'{_sql_str(f)}')"
                cols.append(f"TRY_CAST({expr} AS {sqlt}) AS \"{_ident(f)}\"" if sqlt else f"{expr} AS \"{_ident(f)}\"")
            sel = ", ".join(["r.row_id", "r.status", "r.error"] + cols)
            self.con.execute(
                f"CREATE OR REPLACE VIEW \"step_{_ident(name)}\" AS SELECT {sel} FROM rows r "
                f"JOIN run_rows rr ON rr.row_id = r.row_id AND rr.step = '{_sql_str(name)}' "
                f"WHERE rr.run_id = (SELECT run_id FROM runs WHERE run_id IN (SELECT run_id FROM run_rows WHERE step = '{_sql_str(name)}') "
                f"ORDER BY started_at DESC LIMIT 1)")

    # ------------------------------------------------------------------ reads
    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run SQL; return (column names, rows).

        Raises:
            StoreError: on a SQL error or a write refused by a read-only store.
        """
        try:
            cur = self.con.execute(sql, list(params) if params else None)
            cols = [d[0] for d in cur.description] if cur.description else []
            return cols, cur.fetchall() if cur.description else []
        except duckdb.Error as exc:
            msg = str(exc)
            if self.read_only and ("read-only" in msg.lower() or "read only" in msg.lower()):
                raise StoreError(f"synth query is read-only: {msg.splitlines()[0]}") from None
            if self.read_only and isinstance(exc, duckdb.PermissionException):
                raise StoreError("synth query is read-only and reads only the database: "
                                 f"{msg.splitlines()[0]} (use duckdb itself to work with other files)") from None
            raise StoreError(msg.splitlines()[0] if msg else type(exc).__name__) from None

    def run_rows(self, run_id: str, step: str, status: str | None = "ok") -> list[tuple[str, dict[str, Any]]]:
        """(row_id, data) of the rows a run produced or reused for a step, ordered by creation."""
        sql = ("SELECT r.row_id, r.data FROM run_rows rr JOIN rows r ON r.row_id = rr.row_id "
               "WHERE rr.run_id = ? AND rr.step = ?")
        args: list[Any] = [run_id, step]
        if status:
            sql += " AND r.status = ?"
            args.append(status)
        sql += " ORDER BY r.created_at, r.row_id"
        return [(rid, json.loads(d)) for rid, d in self.con.execute(sql, args).fetchall()]

    def latest_run(self, recipe: str | None = None) -> str | None:
        sql = "SELECT run_id FROM runs"
        args: list[Any] = []
        if recipe:
            sql += " WHERE recipe = ?"
            args.append(recipe)
        row = self.con.execute(sql + " ORDER BY started_at DESC LIMIT 1", args).fetchone()
        return row[0] if row else None

    def lineage(self, row_id: str) -> dict[str, Any]:
        """The ancestry of a row as a nested dict: row_id, step, status, data, parents[].

        Raises:
            StoreError: when no row has that id (a unique prefix is accepted).
        """
        rid = self._resolve_row(row_id)

        def node(r: str, depth: int) -> dict[str, Any]:
            row = self.con.execute("SELECT row_id, step, operator, status, error, data, call_key, round FROM rows WHERE row_id=?",
                                   [r]).fetchone()
            parents = [p for (p,) in self.con.execute("SELECT parent_id FROM lineage WHERE child_id=? ORDER BY parent_id",
                                                      [r]).fetchall()]
            return {"row_id": r, "step": row[1] if row else None, "operator": row[2] if row else None,
                    "status": row[3] if row else None, "error": row[4] if row else None,
                    "data": json.loads(row[5]) if row and row[5] else {}, "call_key": row[6] if row else None,
                    "parents": [node(p, depth + 1) for p in parents] if depth < 64 else []}

        return node(rid, 0)

    def _resolve_row(self, row_id: str) -> str:
        hits = self.con.execute("SELECT row_id FROM rows WHERE row_id LIKE ? LIMIT 2", [row_id + "%"]).fetchall()
        if not hits:
            raise StoreError(f"no row with id {row_id} in {self.path}")
        if len(hits) > 1 and hits[0][0] != row_id:
            raise StoreError(f"row id prefix {row_id} is ambiguous; give more digits")
        return hits[0][0]


def _ident(s: str) -> str:
    return s.replace('"', '""')


def _sql_str(s: str) -> str:
    return s.replace("'", "''")
