"""The DuckDB store: runs, steps, LLM calls, rows and lineage in one file.

This is the only module that imports duckdb; its exceptions become
:class:`~synthlang.errors.StoreError`. Finished calls, their rows, lineage
edges and run links are buffered and written in bulk (one Arrow table per
table, one transaction) by a background writer thread; every finished call is
journaled first (``<db>.journal``), so a run killed at any moment keeps all
finished work. See ``docs/store.md``, "Writes" and "Lookups".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson

from synthlang.errors import SchemaVersionMismatch, StoreError, StoreLocked
from synthlang.plan.keys import CACHE_VERSION

SCHEMA_VERSION = 2
DEFAULT_DB = Path(".synth") / "synth.duckdb"
_SCHEMA = Path(__file__).with_name("schema.sql")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


#: orjson: UTF-8 out, non-str keys as text (as json does), datetimes and dataclasses through ``default=str``
#: (as json's ``default=str`` gave them)
ORJSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _dumps(v: Any) -> str | None:
    """A value as JSON text (``None`` stays SQL NULL); orjson, ~10x the speed of :func:`json.dumps`.

    A value orjson refuses (an int beyond 64 bits, a NaN kept as such) falls back to :func:`json.dumps`.
    """
    if v is None:
        return None
    try:
        return orjson.dumps(v, default=str, option=ORJSON_OPTS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(v, ensure_ascii=False, default=str)


def loads_json(s: str | bytes) -> Any:
    """JSON text from the store as Python values (orjson; DuckDB's JSON is always valid UTF-8 JSON)."""
    try:
        return orjson.loads(s)
    except orjson.JSONDecodeError:
        return json.loads(s)   # NaN / Infinity, which json.dumps wrote in older files


def _call_tuple(call: dict[str, Any], run_id: str, step: str, now: dt.datetime) -> tuple:
    """A call record as a ``calls`` row, in :data:`_CALL_COLS` order."""
    return (call["key"], call["engine"], call["model"], _dumps(call["messages"]), _dumps(call["sampling"]),
            call["seed"], call["sample_index"], _dumps(call.get("json_schema")), call.get("text"),
            call.get("finish_reason"), call.get("prompt_tokens"), call.get("completion_tokens"),
            call.get("latency_s"), call.get("error"), _dumps(call.get("logprobs")), _dumps(call.get("meta")),
            run_id, step, call.get("key_nomax"), now)


def _row_tuples(run_id: str, step: str, r: dict[str, Any], now: dt.datetime) -> tuple[tuple, list[tuple], tuple]:
    """A row record as its ``rows`` row, its ``lineage`` edges and its ``run_rows`` link (column order)."""
    rid = r["row_id"]
    rnd = r.get("round", 0)
    row = (rid, step, r.get("step_fingerprint"), r.get("operator"), rnd, r.get("sample_index", 0), r.get("status", "ok"),
           r.get("error"), r.get("raw"), r.get("call_key"), r.get("model"), r.get("template_hash"), _dumps(r.get("data")), now)
    return row, [(rid, p, step, rnd) for p in r.get("parents", ())], (run_id, rid, step, False, r.get("ord"))


def _journal_line(rec: tuple) -> bytes:
    """A ``calls`` row (:data:`_CALL_COLS` order) as one journal line: JSON, the timestamp in ISO form."""
    try:
        return orjson.dumps(rec[:-1] + (rec[-1].isoformat(),), default=str) + b"\n"
    except (orjson.JSONEncodeError, TypeError):
        return (json.dumps(rec[:-1] + (rec[-1].isoformat(),), ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _journal_record(rec: Any) -> tuple | None:
    """A journal line's JSON as a ``calls`` row (:data:`_CALL_COLS` order), or ``None`` when it is not one.

    Each value must fit its column (text, whole number, number, or an ISO timestamp last); the call key must be
    a non-empty string. A torn, foreign or tampered line gives ``None``, never an exception.
    """
    import pyarrow as pa

    if not isinstance(rec, list) or len(rec) != len(_CALL_COLS) or not isinstance(rec[0], str) or not rec[0]:
        return None
    for v, (_, t) in zip(rec[:-1], _CALL_COLS[:-1], strict=True):
        if v is None:
            continue
        if t == pa.string() and not isinstance(v, str):
            return None
        if t == pa.int64() and (isinstance(v, bool) or not isinstance(v, int) or not -2**63 <= v < 2**63):
            return None
        if t == pa.float64() and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return None
    try:
        created = dt.datetime.fromisoformat(rec[-1])
    except (TypeError, ValueError):
        return None
    return (*rec[:-1], created)


def _cols(spec: str) -> tuple[tuple[str, Any], ...]:
    import pyarrow as pa

    types = {"s": pa.string(), "i": pa.int64(), "f": pa.float64(), "b": pa.bool_(), "t": pa.timestamp("us")}
    return tuple((c.split(":")[0], types[c.split(":")[1]]) for c in spec.split())


_CALL_COLS = _cols("call_key:s engine:s model:s messages:s sampling:s seed:i sample_index:i json_schema:s response:s "
                   "finish_reason:s prompt_tokens:i completion_tokens:i latency_s:f error:s logprobs:s meta:s run_id:s "
                   "step:s key_nomax:s created_at:t")
_ROW_COLS = _cols("row_id:s step:s step_fingerprint:s operator:s round:i sample_index:i status:s error:s raw:s call_key:s "
                  "model:s template_hash:s data:s created_at:t")
_LINEAGE_COLS = _cols("child_id:s parent_id:s step:s round:i")
_RUN_ROW_COLS = _cols("run_id:s row_id:s step:s reused:b ord:s")


@dataclass
class _Buffer:
    """Writes not yet flushed, keyed so that a later copy of the same key wins (calls, rows) or is dropped."""

    calls: dict[str, tuple] = field(default_factory=dict)
    rows: dict[str, tuple] = field(default_factory=dict)
    lineage: dict[tuple[str, str], tuple] = field(default_factory=dict)
    run_rows: dict[tuple[str, str, str], tuple] = field(default_factory=dict)
    steps: list[tuple[str, list[Any]]] = field(default_factory=list)   # step stats written while the file was held
    results: int = 0
    first_at: float = 0.0


def _locked(fn: Any) -> Any:
    """Run a :class:`Store` method under the store's connection lock (the runner's node threads and the
    background writer share one connection). Lock order: the connection lock, then the buffer lock."""
    import functools

    @functools.wraps(fn)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._db:
            return fn(self, *args, **kwargs)
    return wrapper


def _is_lock_error(exc: Exception) -> bool:
    msg = str(exc).lower()
    return "lock" in msg or "conflicting" in msg


def _holder(msg: str) -> str:
    """The process DuckDB names in a lock error ("... is held in /usr/bin/python3 (PID 123) ..."), or the message."""
    import re

    m = re.search(r"held in (.*?\(PID \d+\))", msg)
    return f"held by {m.group(1)}" if m else msg.splitlines()[0][:200]


def _connect(path: Path, read_only: bool, wait_s: float = 0.0) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying for up to ``wait_s`` seconds while another process holds its lock.

    Raises:
        StoreLocked: still locked after ``wait_s`` seconds.
        StoreError: any other failure to open.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.01
    asked = -1.0
    while True:
        try:
            # readers get no file system access: `synth query` can neither write files (COPY ... TO)
            # nor read any outside the database (read_csv, ATTACH, extensions)
            con = duckdb.connect(str(path), read_only=read_only,
                                 config={"enable_external_access": False} if read_only else {})
            if not read_only:   # no checkpoint in the middle of a run: the WAL is checkpointed when the writer lets go
                con.execute("SET checkpoint_threshold = '1GB'")
                con.execute(f"SET memory_limit = '{writer_memory_limit(path)}'")
            return con
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"cannot open {path}: {exc}") from None
            if read_only and time.monotonic() >= asked + 0.5:   # ask the writer to let go (Store.release)
                asked = time.monotonic()
                try:
                    want = path.with_name(path.name + ".wantread")
                    want.touch()
                    os.utime(want)
                except OSError:
                    pass
            if time.monotonic() >= deadline:
                holder = _holder(str(exc))
                if read_only:
                    raise StoreLocked(
                        f"{path} is busy: a 'synth run' is committing to it and did not let go within {wait_s:.0f} s "
                        f"({holder}). Try again in a moment, or read a copy: cp the file and pass --db COPY."
                    ) from None
                err = StoreLocked(
                    f"{path} is held open by another process ({holder}) and synthlang could not write to it for "
                    f"{wait_s:.0f} s. Every finished call is kept in {path.name}.journal and is written on the next run: "
                    "close the other connection (a notebook's duckdb.connect, a 'synth query' still running) and run "
                    "the same command again.")
                err.holder = holder
                raise err from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def writer_memory_limit(path: Path) -> str:
    """DuckDB's ``memory_limit`` for the writer: ``SYNTH_DB_MEMORY`` if set, else half the file's size, at
    least 256 MB (set again at each reopen, so it follows the file as it grows).

    DuckDB's default (80% of RAM) lets its buffer pool keep every block a run wrote: the writer's RSS then
    grew with the dataset (1.25 GB peak at 100k seeds, a 505 MB file, against 0.71 GB under a 300 MB limit).
    Indexes must fit in that memory; the primary keys' and the lineage index's ART nodes are about a tenth
    of the file, so half of it leaves them room; sorts and joins beyond it spill to ``<db>.tmp``.
    """
    env = os.environ.get("SYNTH_DB_MEMORY")
    if env:
        return env
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return f"{max(256, size // 2_000_000)}MB"


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
    HOLD_S = 1.0
    #: ... and at the latest after this many seconds, whether or not a reader asked (see :meth:`release`)
    HOLD_MAX_S = 3.0
    #: seconds a reader waits for a committing writer; a writer waits longer for readers.
    READ_WAIT_S = 10.0
    WRITE_WAIT_S = 120.0

    #: a flush happens when this many results (finished calls, or rows made without a call) are buffered ...
    FLUSH_RESULTS = 4096
    #: ... or when the oldest buffered result is this many seconds old (checked on each write and by
    #: the runner's ticker), and at the run's end, stop and exit. Every DuckDB commit costs tens of ms
    #: (the WAL is synced); the journal, not the flush, is what keeps finished calls safe from a kill.
    FLUSH_S = 0.5
    #: seconds a writer leaves the file free after letting go, so a reader polling for it gets in
    READER_GAP_S = 0.4
    #: seconds a writer waits for the file before it decides a reader keeps it (a notebook's read-only
    #: connection left open, issue 11 item 9); from then on it reads through a read-only connection of its
    #: own, keeps its writes buffered (every finished call in the journal) and retries once a second
    TAKE_WAIT_S = 2.0
    #: while the file is held, buffered results beyond this many make a flush wait for the file (memory bound)
    BLOCKED_MAX = 200_000
    #: while a flush is in flight, a producer with this many more results buffered waits for it (memory bound)
    BACKLOG_MAX = 16_384

    def __init__(self, path: str | Path = DEFAULT_DB, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._con: duckdb.DuckDBPyConnection | None = None
        self._ro_con: duckdb.DuckDBPyConnection | None = None   # reads while another process holds the file
        #: what holds the file while this writer cannot take it ("held by /usr/bin/python3 (PID 123)"), else None
        self.blocked_by: str | None = None
        self._retry_at = 0.0
        self.on_blocked: Any = None   # called once with a message when another process starts keeping the file
        self._opened_at = 0.0
        self._released_at = 0.0
        self._depth = 0
        self._run_lock: _RunLock | None = None
        # one connection, used by the runner's node threads and the background writer in turn (_db), and the
        # write buffer (_lock); whoever needs both takes _db first
        self._db = threading.RLock()
        self._lock = threading.RLock()
        self._buf = _Buffer()
        self._flushing: _Buffer | None = None   # swapped out of _buf, being written by the background writer
        self._writer: threading.Thread | None = None
        self._wake = threading.Event()
        self._writer_stop = False
        self._writer_error: BaseException | None = None
        self._journal_path = self.path.with_name(self.path.name + ".journal")
        self._want_path = self.path.with_name(self.path.name + ".wantread")
        self._journal_fd: int | None = None
        self._snapshot: tuple[set[str], set[tuple[str, str]]] | None = None   # see _known
        #: flushes done, and calls replayed from a killed writer's journal when this store opened
        self.flushes = 0
        self.replayed = 0
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
            if not read_only:
                self._replay_journal()
        except BaseException:
            self.close()
            raise

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, opened on first use (a reader holds it until :meth:`close`).

        A writer waits up to ``WRITE_WAIT_S`` for a reader in another process to let go.

        Raises:
            StoreLocked: the file stayed held; the message names the holding process (and PID).
        """
        if self._con is None:
            self._close_ro()
            try:
                self._con = _connect(self.path, self.read_only, self.READ_WAIT_S if self.read_only else self.WRITE_WAIT_S)
            except StoreLocked as exc:
                self.blocked_by = getattr(exc, "holder", None) or self.blocked_by
                raise
            self._opened_at = time.monotonic()
            self.blocked_by = None
        return self._con

    @property
    def rcon(self) -> duckdb.DuckDBPyConnection:
        """A connection for reads. A writer whose file another process keeps open (a notebook's read-only
        connection, issue 11 item 9) reads through a read-only connection of its own instead of stalling."""
        if self._con is not None or self.read_only:
            return self.con
        if self.blocked_by is None:
            if self._try_take(self.TAKE_WAIT_S):
                return self._con   # type: ignore[return-value]
        elif self._ro_con is None or time.monotonic() >= self._retry_at:
            self._retry_at = time.monotonic() + 1.0
            if self._try_take(0.0):
                return self._con   # type: ignore[return-value]
        if self._ro_con is None:
            self._ro_con = _connect(self.path, True, self.READ_WAIT_S)
        return self._ro_con

    def _try_take(self, wait_s: float) -> bool:
        """Try to open the file for writing within ``wait_s``; on a lock held elsewhere, note the holder and
        return False (the caller keeps buffering)."""
        self._close_ro()
        try:
            self._con = _connect(self.path, False, wait_s)
        except StoreLocked as exc:
            first = self.blocked_by is None
            self.blocked_by = getattr(exc, "holder", None) or "held by another process"
            self._retry_at = time.monotonic() + 1.0
            if first and self.on_blocked is not None:
                self.on_blocked(f"{self.path} is kept open by another process ({self.blocked_by}); the run goes on, "
                                f"keeping every finished call in {self.journal_path.name} until it lets go")
            return False
        self._opened_at = time.monotonic()
        self.blocked_by = None
        return True

    def _reader_waiting(self) -> bool:
        """Whether a reader asked for the file since this writer opened it (``<db>.wantread`` touched)."""
        try:
            asked = os.stat(self._want_path).st_mtime
        except OSError:
            return False
        return asked >= time.time() - (time.monotonic() - self._opened_at) - 0.05

    def _close_ro(self) -> None:
        if self._ro_con is not None:
            try:
                self._ro_con.close()
            except duckdb.Error:
                pass
            self._ro_con = None

    @property
    def journal_path(self) -> Path:
        """The append-only journal of finished calls not yet flushed (``<db>.journal``)."""
        return self._journal_path

    def release(self, force: bool = False, idle: bool = False) -> None:
        """Let go of DuckDB's file lock (the advisory run lock stays held; buffered writes stay buffered).

        Called after each flush. A writer lets go once it has held the file ``HOLD_S`` seconds when a
        reader asked for it (a ``synth query``/``lineage``/``export`` that found the file locked touches
        ``<db>.wantread``) or when it is ``idle`` (waiting on its engines), and after ``HOLD_MAX_S`` in any
        case (readers that do not ask, such as a notebook's own ``duckdb.connect``). Closing the
        connection checkpoints the WAL into the file and reopening costs again, so a writer nobody waits
        for keeps it: at a high write rate that cycle was a large share of the run.
        """
        with self._db:
            if self._con is None or self.read_only or self._depth:
                return
            held = time.monotonic() - self._opened_at
            if force or held >= self.HOLD_MAX_S or (held >= self.HOLD_S and (idle or self._reader_waiting())):
                try:
                    self._con.close()
                except duckdb.Error:
                    pass
                self._con = None
                self._released_at = time.monotonic()

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
        """Stop the background writer, flush what is buffered (a writer), close the connection, drop the run lock."""
        if self._writer is not None:
            self._writer_stop = True
            self._wake.set()
            self._writer.join()
            self._writer = None
        try:
            if not self.read_only and self._run_lock is not None and (self._buf.calls or self._buf.rows or self._buf.run_rows
                                                                      or self._buf.steps):
                try:
                    self.flush(release=False)
                except StoreLocked:
                    pass   # another process kept the file: the journal holds every finished call for the next open
        finally:
            self._close_ro()
            if self._con is not None:
                try:
                    self._con.close()
                except duckdb.Error:
                    pass
                self._con = None
            if self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal_fd = None
            if self._run_lock is not None:
                self._run_lock.release()
                self._run_lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------- runs
    @_locked
    def begin_run(self, run_id: str, recipe: str, recipe_path: str, fingerprint: str,
                  params: dict[str, Any], argv: list[str], version: str) -> None:
        """Record the start of a run; runs left 'running' by a killed process become 'killed'.

        Only the holder of the run lock writes, so any other 'running' run is dead.
        """
        self._snapshot = None   # what the file holds now (see _known), not what it held at an earlier run
        self.con.execute("UPDATE runs SET status='killed' WHERE status='running'")
        self.con.execute(
            "INSERT INTO runs (run_id, recipe, recipe_path, recipe_fingerprint, params, argv, status, started_at, synth_version)"
            " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
            [run_id, recipe, recipe_path, fingerprint, _dumps(params), _dumps(argv), _now(), version])
        self.release(force=True)

    @_locked
    def finish_run(self, run_id: str, status: str, stats: dict[str, Any]) -> None:
        """Record a run's end: status and totals (calls, tokens, wall seconds); flushes what is buffered first."""
        self.flush(release=False)
        self.con.execute(
            "UPDATE runs SET status=?, finished_at=?, calls_made=?, calls_cached=?, prompt_tokens=?,"
            " completion_tokens=?, wall_s=? WHERE run_id=?",
            [status, _now(), stats.get("calls_made", 0), stats.get("calls_cached", 0), stats.get("prompt_tokens", 0),
             stats.get("completion_tokens", 0), stats.get("wall_s"), run_id])
        self.release(force=True)

    @_locked
    def record_step(self, run_id: str, info: dict[str, Any]) -> None:
        """Insert or replace a step's stats for this run."""
        cols = ["run_id", "step", "fingerprint", "operator", "input", "model", "engine", "model_id", "template_hash",
                "options", "rows_in", "rows_out", "rows_failed", "calls_made", "calls_cached", "prompt_tokens",
                "completion_tokens", "started_at", "finished_at"]
        vals = [run_id] + [info.get(c) for c in cols[1:]]
        vals[cols.index("options")] = _dumps(info.get("options"))
        sql = f"INSERT OR REPLACE INTO steps ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        # another process keeps the file (issue 11 item 9): written with the next flush, never a stall
        if self._con is None and (self.blocked_by is not None or not self._try_take(self.TAKE_WAIT_S)):
            with self._lock:
                self._buf.steps.append((sql, vals))
            return
        self.con.execute(sql, vals)
        self.release()

    # ------------------------------------------------------------------ calls
    @_locked
    def get_batch_job(self, job_key: str) -> dict[str, Any] | None:
        """The Batch API job recorded under ``job_key`` (see table ``batch_jobs``), or ``None``."""
        row = self.rcon.execute("SELECT batch_id, input_file_id, endpoint, status, n_requests FROM batch_jobs WHERE job_key=?",
                               [job_key]).fetchone()
        if row is None:
            return None
        return dict(zip(("batch_id", "input_file_id", "endpoint", "status", "n_requests"), row, strict=True))

    @_locked
    def put_batch_job(self, job_key: str, batch_id: str, input_file_id: str, endpoint: str, status: str,
                      n_requests: int) -> None:
        """Record (or update) a Batch API job; committed at once so a crash right after keeps it."""
        now = _now()
        self.con.execute(
            "INSERT INTO batch_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_key) DO UPDATE SET "
            "batch_id=excluded.batch_id, input_file_id=excluded.input_file_id, status=excluded.status, "
            "updated_at=excluded.updated_at",
            [job_key, batch_id, input_file_id, endpoint, status, n_requests, now, now])

    def _known(self) -> tuple[set[str], set[tuple[str, str]]]:
        """Step fingerprints with ok rows, and (engine, model) pairs with finished calls, in the file when this
        writer first looked (one scan each). A fresh run's lookups for anything else are answered empty without
        a query: its row ids and call keys cannot be stored yet. What this run itself stores is found by the
        scheduler (a call key asked twice comes back as ``recheck``), and a row written twice is merged by
        :meth:`flush`, so the snapshot only has to be a superset of what was stored before the run."""
        if self._snapshot is None:
            con = self.rcon
            fps = {fp for (fp,) in con.execute("SELECT DISTINCT step_fingerprint FROM rows WHERE status = 'ok'").fetchall()}
            models = {(e, m) for e, m in con.execute("SELECT DISTINCT engine, model FROM calls WHERE error IS NULL").fetchall()}
            self._snapshot = (fps, models)
        return self._snapshot

    def _lookup(self, sql: str, keys: Sequence[str]) -> list[tuple]:
        """Run ``sql`` with the list ``keys`` as its one parameter (``col = ANY(?)``): one query for any number of
        keys (a 2,048-key lookup in a 400,000-row table takes ~30 ms)."""
        return self.rcon.execute(sql, [list(keys)]).fetchall()

    def get_calls(self, keys: Sequence[str], model: tuple[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """Finished calls (no error) among ``keys``, by key.

        Args:
            model: ``(engine, model id)`` of every key, when the caller knows it: keys of a model with no
                stored call before this run are only looked up among this run's unflushed calls.
        """
        if not keys:
            return {}
        out: dict[str, dict[str, Any]] = {}
        # finished in this run, not yet written (buffered, or in the flush in flight); a key moves from the
        # buffer to the flush to the database, each step under the buffer lock, so looking here first never misses
        with self._lock:
            bufs = [self._buf.calls] + ([self._flushing.calls] if self._flushing is not None else [])
            for k in keys:
                rec = next((c[k] for c in bufs if k in c), None)
                if rec is not None and rec[13] is None:
                    out[k] = {"text": rec[8], "finish_reason": rec[9], "prompt_tokens": rec[10],
                              "completion_tokens": rec[11], "latency_s": rec[12],
                              "logprobs": loads_json(rec[14]) if rec[14] else None}
        keys = [k for k in keys if k not in out]
        if not keys or self._unknown(model, 1):
            return out
        with self._db:
            if self._unknown(model, 1):
                return out
            got = self._get_calls(keys)
        return out | got

    def _unknown(self, what: Any, i: int) -> bool:
        """Whether ``what`` (a fingerprint, i=0, or an (engine, model), i=1) had nothing stored before this run
        (see :meth:`_known`; without ``_db`` held only a snapshot already taken is consulted)."""
        if what is None:
            return False
        snap = self._snapshot
        if snap is None:
            if not self._db.acquire(blocking=False):
                return False
            try:
                snap = self._known()
            finally:
                self._db.release()
        return what not in snap[i]

    def _get_calls(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        res = self._lookup(
            "SELECT call_key, response, finish_reason, prompt_tokens, completion_tokens, latency_s, logprobs"
            " FROM calls WHERE call_key = ANY(?) AND error IS NULL", keys)
        for k, resp, fr, pt, ct, lat, lps in res:
            out[k] = {"text": resp, "finish_reason": fr, "prompt_tokens": pt, "completion_tokens": ct,
                      "latency_s": lat, "logprobs": loads_json(lps) if lps else None}
        return out

    def get_calls_relaxed(self, relaxed_keys: Sequence[str], model: tuple[str, str] | None = None
                          ) -> dict[str, list[dict[str, Any]]]:
        """Finished calls (no error) by their key without ``max_tokens`` (``calls.key_nomax``).

        Args:
            model: as for :meth:`get_calls`.

        Returns:
            relaxed key → calls, each as :meth:`get_calls` gives it plus ``key`` and ``error``;
            those that stopped on their own first, then by fewest completion tokens (see
            :mod:`synthlang.plan.reuse` for when one may be reused).
        """
        out: dict[str, list[dict[str, Any]]] = {}
        if not relaxed_keys or self._unknown(model, 1):
            return out
        with self._db:
            if self._unknown(model, 1):
                return out
            res = self._lookup(
                "SELECT key_nomax, call_key, response, finish_reason, prompt_tokens, completion_tokens, latency_s, logprobs"
                " FROM calls WHERE key_nomax = ANY(?) AND error IS NULL"
                " ORDER BY finish_reason <> 'stop', completion_tokens, call_key", relaxed_keys)
        for rk, k, resp, fr, pt, ct, lat, lps in res:
            out.setdefault(rk, []).append({
                "key": k, "text": resp, "finish_reason": fr, "prompt_tokens": pt, "completion_tokens": ct,
                "latency_s": lat, "logprobs": loads_json(lps) if lps else None, "error": None})
        return out

    def ok_ids(self, row_ids: Sequence[str], fingerprint: str | None = None) -> set[str]:
        """The ids among ``row_ids`` of rows stored with status ok (their data is not read: a cached re-run
        passes reused rows on by id, and loads their data only where an operator needs it).

        Args:
            fingerprint: as for :meth:`ok_rows`.
        """
        if not row_ids or self._unknown(fingerprint, 0):
            return set()
        with self._db:
            if self._unknown(fingerprint, 0):
                return set()
            return {rid for (rid,) in self._lookup("SELECT row_id FROM rows WHERE row_id = ANY(?) AND status = 'ok'",
                                                   row_ids)}

    def ok_rows(self, row_ids: Sequence[str], fingerprint: str | None = None) -> dict[str, dict[str, Any]]:
        """Rows among ``row_ids`` that finished with status ok: id → data.

        Args:
            fingerprint: the step fingerprint of every id, when the caller knows it: ids of a step with no ok
                row stored before this run are answered empty without a query (see :meth:`_known`).
        """
        if not row_ids or self._unknown(fingerprint, 0):
            return {}
        with self._db:
            if self._unknown(fingerprint, 0):
                return {}
            return {rid: loads_json(data) for rid, data in self._lookup(
                "SELECT row_id, data FROM rows WHERE row_id = ANY(?) AND status = 'ok'", row_ids)}

    @_locked
    def failed_rows(self, row_ids: Sequence[str]) -> dict[str, str | None]:
        """Rows among ``row_ids`` stored with status failed: id → call key."""
        if not row_ids:
            return {}
        return dict(self._lookup("SELECT row_id, call_key FROM rows WHERE row_id = ANY(?) AND status = 'failed'", row_ids))

    # ----------------------------------------------------------------- writes
    # Writes are buffered and flushed set-based (one Arrow table per table, one transaction) by a background
    # writer thread once FLUSH_RESULTS results or FLUSH_S seconds accumulate, and synchronously at the run's
    # end, before a query and at close (:meth:`flush`). DuckDB releases the GIL while it inserts, so the run
    # goes on making rows meanwhile; results that arrive during a flush go to a fresh buffer and form the next
    # (larger) batch. Finished calls are appended to the journal first, so a process killed before a flush
    # loses no finished call: the next writer replays the journal on open. While a flush is in flight its
    # calls are in ``<db>.journal.flushing`` and new ones in ``<db>.journal``; the flushing file is removed
    # once its transaction commits.

    def commit_result(self, run_id: str, step: str, call: dict[str, Any] | None, rows: Iterable[dict[str, Any]]) -> None:
        """Record one finished call and the rows made from it, with their lineage.

        The call is journaled at once (it survives kill -9); call, rows and lineage reach the database
        in the next flush, all in one transaction with the other buffered results.

        Args:
            run_id: the current run.
            step: the step's name.
            call: the call record (None for rows made without a new call).
            rows: row records: row_id, parents, data, status, error, raw, ... .

        Raises:
            StoreError: the background writer failed (nothing is lost: the journal keeps every call).
        """
        self.commit_results(run_id, step, [(call, rows)])

    def commit_results(self, run_id: str, step: str, results: Sequence[tuple[dict[str, Any] | None,
                                                                              Iterable[dict[str, Any]]]]) -> None:
        """Record several finished calls (each with its rows) of one step: one journal write for all of them.

        Args:
            results: ``(call record or None, row records)`` pairs, as for :meth:`commit_result`.
        """
        now = _now()
        calls: list[tuple] = []
        made: list[tuple[tuple, list[tuple], tuple]] = []
        n_plain = 0
        for call, rows in results:   # serialised outside the lock: other steps keep committing meanwhile
            if call is not None:
                calls.append(_call_tuple(call, run_id, step, now))
            for r in rows:
                made.append(_row_tuples(run_id, step, r, now))
                if call is None:
                    n_plain += 1
        lines = b"".join(_journal_line(rec) for rec in calls)
        with self._lock:
            b = self._buf
            for rec in calls:
                b.calls[rec[0]] = rec
            for row, edges, link in made:
                b.rows[row[0]] = row
                for e in edges:
                    b.lineage.setdefault((e[0], e[1]), e)
                b.run_rows.setdefault((link[0], link[1], link[2]), link)
            b.results += len(calls) + n_plain
            if b.first_at == 0.0 and (calls or made):
                b.first_at = time.monotonic()
            if lines:
                self._journal_write(lines)
        self._maybe_flush()

    def write_rows(self, run_id: str, step: str, rows: Sequence[dict[str, Any]]) -> None:
        """Buffer rows made without a call (seeds, row operators); flushed with the next batch."""
        self.commit_results(run_id, step, [(None, rows)])

    def mark_reused(self, run_id: str, step: str, row_ids: Sequence[str], ords: Sequence[str | None] | None = None) -> None:
        """Link rows finished by an earlier run to this run (buffered like every other write).

        Args:
            ords: each row's canonical order key (``run_rows.ord``), or ``None``.
        """
        if not row_ids:
            return
        with self._lock:
            b = self._buf
            for i, rid in enumerate(row_ids):
                b.run_rows[(run_id, rid, step)] = (run_id, rid, step, True, ords[i] if ords else None)
            b.results += len(row_ids)
            if b.first_at == 0.0:
                b.first_at = time.monotonic()
        self._maybe_flush()

    def pending(self) -> int:
        """Buffered results not yet flushed to the database (including a flush in flight)."""
        with self._lock:
            return self._buf.results + (self._flushing.results if self._flushing is not None else 0)

    def _due(self) -> bool:
        b = self._buf
        return b.results >= self.FLUSH_RESULTS or bool(b.first_at and time.monotonic() - b.first_at >= self.FLUSH_S)

    def _maybe_flush(self) -> None:
        """Wake the background writer when a flush is due; wait for it when far too much is buffered."""
        if self._writer_error is not None:
            err, self._writer_error = self._writer_error, None
            raise err
        if not self._due():
            return
        if self._writer is None:
            with self._lock:
                if self._writer is None and not self.read_only:
                    self._writer = threading.Thread(target=self._writer_loop, name="store-writer", daemon=True)
                    self._writer.start()
        self._wake.set()
        # backpressure: producers outran the writer by a lot (or a reader keeps the file): write now, here
        if self._buf.results >= self.BLOCKED_MAX:
            self.flush(release=True)
        elif self._buf.results >= self.BACKLOG_MAX and self._flushing is not None and self.blocked_by is None:
            with self._db:   # the writer is behind: wait for its flush in flight (bounds the buffers' memory)
                pass

    def _writer_loop(self) -> None:
        while not self._writer_stop:
            self._wake.wait(0.05)
            self._wake.clear()
            if self._writer_stop:
                return
            try:
                with self._db:
                    if self._due() and self._may_take():
                        self._flush_locked(release=True)
            except BaseException as exc:  # noqa: BLE001 - raised in the producing thread by the next write
                self._writer_error = exc
                time.sleep(0.2)

    def _may_take(self) -> bool:
        """Whether the writer may open the file now (under ``_db``): not while it leaves readers a window after
        letting go, nor while a reader keeps it (issue 11 item 9: retried once a second, the run never stalls)."""
        if self._con is not None:
            return True
        now = time.monotonic()
        if now - self._released_at < self.READER_GAP_S and self._buf.results < 8 * self.FLUSH_RESULTS:
            return False
        if self.blocked_by is not None and now < self._retry_at:
            return False
        return self._try_take(0.0 if self.blocked_by is not None else self.TAKE_WAIT_S)

    def flush(self, release: bool = True) -> None:
        """Write everything buffered in one transaction: calls, rows, lineage and run links, set-based.

        Calls and rows replace an older copy with the same key (an errored call or a failed row that
        succeeded on retry); lineage edges and run links already present are skipped, so a batch
        written twice (a replayed journal, a resumed run) changes nothing. Waits for a flush the
        background writer has in flight.

        Raises:
            StoreError: DuckDB refused the write (the buffer is kept and the journal still holds every call).
            StoreLocked: another process held the file for longer than ``WRITE_WAIT_S``.
        """
        with self._db:
            self._flush_locked(release)

    def _flush_locked(self, release: bool) -> None:
        """:meth:`flush` under ``_db``: swap the buffer out (and rotate the journal), write it, drop it."""
        with self._lock:
            b = self._buf
            if not (b.calls or b.rows or b.lineage or b.run_rows or b.steps):
                b.results, b.first_at = 0, 0.0
                return
        _ = self.con   # the file first (this may wait for a reader, StoreLocked): until then the journal stays as it is
        with self._lock:
            b = self._buf
            self._flushing, self._buf = b, _Buffer()
            self._journal_rotate()
        try:
            self._insert(b.calls.values(), b.rows.values(), b.lineage.values(), b.run_rows.values(), b.steps)
        except BaseException:
            with self._lock:   # keep it: merged back under what arrived meanwhile (newer copies win)
                nb = self._buf
                self._buf = _Buffer(b.calls | nb.calls, b.rows | nb.rows, b.lineage | nb.lineage, b.run_rows | nb.run_rows,
                                    b.steps + nb.steps, b.results + nb.results, b.first_at or nb.first_at)
                self._flushing = None
            raise
        with self._lock:
            self._flushing = None
            self._journal_done()
            self.flushes += 1
        if release:
            self.release()

    def _insert(self, calls: Iterable[tuple], rows: Iterable[tuple], lineage: Iterable[tuple],
                run_rows: Iterable[tuple], steps: Sequence[tuple[str, list[Any]]] = ()) -> None:
        import pyarrow as pa

        con = self.con
        # (table, key columns, replace an existing copy?, columns, records)
        tables = [("calls", ("call_key",), True, _CALL_COLS, list(calls)), ("rows", ("row_id",), True, _ROW_COLS, list(rows)),
                  ("lineage", ("child_id", "parent_id"), False, _LINEAGE_COLS, list(lineage)),
                  ("run_rows", ("run_id", "row_id", "step"), False, _RUN_ROW_COLS, list(run_rows))]
        arrows = []
        for name, key, replace, cols, recs in tables:
            if recs:
                columns = list(zip(*recs, strict=True))   # one C-level transpose, then one Arrow array per column
                arrows.append((name, key, replace, cols, pa.table({c: pa.array(columns[i], type=t)
                                                                   for i, (c, t) in enumerate(cols)})))
        # Almost every batch holds only new keys: a plain INSERT checks them against the primary keys' indexes
        # (tens of ms). A key already stored (a failed row or errored call redone, a replayed journal, a resumed
        # run) raises a constraint error; then the batch is written again set-based: existing keys updated in
        # place or skipped, the rest inserted (an anti-join, which scans the table: slower on a large store).
        for name, _, _, _, arrow in arrows:   # registered outside the transaction: an aborted one refuses unregister
            con.register(f"_synth_buf_{name}", arrow)
        try:
            for careful in (False, True):
                try:
                    con.execute("BEGIN TRANSACTION")
                    for name, key, replace, cols, _ in arrows:
                        names = ", ".join(c for c, _ in cols)
                        buf = f"_synth_buf_{name}"
                        if not careful:
                            con.execute(f"INSERT INTO {name} ({names}) SELECT * FROM {buf}")
                            continue
                        on = " AND ".join(f"t.{k} = b.{k}" for k in key)
                        if replace and con.execute(f"SELECT count(*) FROM {name} t JOIN {buf} b ON {on}").fetchone()[0]:
                            sets = ", ".join(f"{c} = b.{c}" for c, _ in cols if c not in key)
                            con.execute(f"UPDATE {name} AS t SET {sets} FROM {buf} b WHERE {on}")
                        con.execute(f"INSERT INTO {name} ({names}) SELECT b.* FROM {buf} b ANTI JOIN {name} t ON {on}")
                    for sql, vals in steps:
                        con.execute(sql, vals)
                    con.execute("COMMIT")
                    return
                except BaseException as exc:
                    try:
                        con.execute("ROLLBACK")
                    except duckdb.Error:
                        pass
                    if isinstance(exc, duckdb.ConstraintException) and not careful:
                        continue
                    if not isinstance(exc, duckdb.Error):
                        raise
                    raise StoreError(f"cannot write to {self.path}: {exc}") from None
        finally:
            for name, *_ in arrows:
                try:
                    con.unregister(f"_synth_buf_{name}")
                except duckdb.Error:
                    pass

    # ---------------------------------------------------------------- journal
    @property
    def _flushing_path(self) -> Path:
        return self._journal_path.with_name(self._journal_path.name + ".flushing")

    def _journal_write(self, data: bytes) -> None:
        if self._journal_fd is None:
            self._journal_fd = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._journal_fd, data)

    def _journal_rotate(self) -> None:
        """The journal's calls now belong to the flush in flight (``<db>.journal.flushing``); new calls go to a
        fresh journal. A flushing file left by a failed flush keeps its lines, first."""
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
        if not self._journal_path.exists():
            return
        if self._flushing_path.exists():
            with open(self._flushing_path, "ab") as out, open(self._journal_path, "rb") as cur:
                out.write(cur.read())
            os.unlink(self._journal_path)
        else:
            os.replace(self._journal_path, self._flushing_path)

    def _journal_done(self) -> None:
        """The flush committed: its journal lines are in the database."""
        try:
            os.unlink(self._flushing_path)
        except FileNotFoundError:
            pass

    def _replay_journal(self) -> int:
        """Insert the calls a killed writer journaled but never flushed; returns how many."""
        recs: dict[str, tuple] = {}
        files = [p for p in (self._flushing_path, self._journal_path) if p.exists()]   # older first: later lines win
        if not files:
            return 0
        for path in files:
            with open(path, "rb") as f:
                for raw in f:
                    # A line cut by the kill, garbage bytes or a record of the wrong shape is skipped: its call is
                    # simply issued again (never a crash that locks the user out of the store).
                    try:
                        rec = json.loads(raw.decode("utf-8"))
                    except (UnicodeDecodeError, ValueError):
                        continue
                    if (rec := _journal_record(rec)) is not None:
                        recs[rec[0]] = rec
        if recs:
            self._insert(recs.values(), (), (), ())
        for path in files:
            if path == self._journal_path:
                os.truncate(path, 0)
            else:
                os.unlink(path)
        self.replayed = len(recs)
        return len(recs)

    @_locked
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

    @_locked
    def record_train(self, run_id: str, info: dict[str, Any]) -> None:
        """Record one external training command run between loop rounds (table ``train_runs``)."""
        self.con.execute(
            "INSERT INTO train_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run_id, info["loop"], info["round"], info["command"], info.get("data_path"), info.get("output_path"),
             info.get("inputs_digest"), info.get("exit_status"), info.get("output_tail"), info.get("seconds"), _now()])

    @_locked
    def finished_train(self, loop: str, round_: int, command: str, inputs_digest: str) -> bool:
        """Whether an earlier run already ran this training command on the same rows with exit status 0."""
        row = self.con.execute(
            "SELECT 1 FROM train_runs WHERE loop=? AND round=? AND command=? AND inputs_digest=? AND exit_status=0 LIMIT 1",
            [loop, round_, command, inputs_digest]).fetchone()
        return row is not None

    @_locked
    def record_export(self, run_id: str, step: str, path: str, fmt: str, rows: int) -> None:
        self.con.execute("INSERT INTO exports VALUES (?, ?, ?, ?, ?, ?)", [run_id, step, path, fmt, rows, _now()])

    @_locked
    def refresh_views(self, steps: dict[str, dict[str, str]], recipe: str | None = None) -> None:
        """Create the step views of one recipe, with the step's fields as typed columns (its latest run).

        ``"<recipe>".step_<name>`` (a schema per recipe) always names that recipe's step. The unscoped
        ``step_<name>`` points at it while no other recipe in the file has a step of that name; once two
        do, querying it fails with a message naming the recipes and their scoped views.
        """
        for name, fields in steps.items():
            cols = []
            for f, t in fields.items():
                sqlt = {"int": "BIGINT", "float": "DOUBLE", "number": "DOUBLE", "bool": "BOOLEAN"}.get(t)
                expr = f"(r.data->>'{_sql_str(f)}')"
                cols.append(f"TRY_CAST({expr} AS {sqlt}) AS \"{_ident(f)}\"" if sqlt else f"{expr} AS \"{_ident(f)}\"")
            sel = ", ".join(["r.row_id", "r.status", "r.error"] + cols)
            scope = f"AND recipe = '{_sql_str(recipe)}' " if recipe else ""
            body = (f"SELECT {sel} FROM rows r "
                    f"JOIN run_rows rr ON rr.row_id = r.row_id AND rr.step = '{_sql_str(name)}' "
                    f"WHERE rr.run_id = (SELECT run_id FROM runs WHERE run_id IN "
                    f"(SELECT run_id FROM run_rows WHERE step = '{_sql_str(name)}') {scope}"
                    f"ORDER BY started_at DESC LIMIT 1)")
            view = f"step_{_ident(name)}"
            if recipe:
                # qualified by the catalog: a recipe named like the database file would be ambiguous otherwise
                cat = _ident(self.con.execute("SELECT current_database()").fetchone()[0])
                self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{cat}"."{_ident(recipe)}"')
                self.con.execute(f'CREATE OR REPLACE VIEW "{cat}"."{_ident(recipe)}"."{view}" AS {body}')
            owners = self.step_recipes(name)
            if len(owners) > 1:
                msg = (f"step_{name} is ambiguous: recipes {', '.join(owners)} all have a step '{name}'; query "
                       + " or ".join(f'"{o}".step_{name}' for o in owners))
                self.con.execute(f"CREATE OR REPLACE VIEW \"{view}\" AS {body} AND error('{_sql_str(msg)}') IS NULL")
            else:
                self.con.execute(f"CREATE OR REPLACE VIEW \"{view}\" AS {body}")

    @_locked
    def step_recipes(self, step: str) -> list[str]:
        """Recipes with a run that made or reused rows of a step named ``step``, sorted."""
        return [r for (r,) in self.con.execute(
            "SELECT DISTINCT r.recipe FROM runs r WHERE r.run_id IN (SELECT DISTINCT run_id FROM run_rows WHERE step = ?) "
            "ORDER BY 1", [step]).fetchall()]

    @_locked
    def step_run(self, step: str, recipe: str | None = None) -> str:
        """The latest run that has ``step`` (of ``recipe`` when given).

        Raises:
            StoreError: no run has that step, or (without ``recipe``) several recipes have it;
                the message names the candidates (``--recipe NAME``).
        """
        owners = self.step_recipes(step)
        if recipe is None and len(owners) > 1:
            raise StoreError(f"step '{step}' is ambiguous: recipes {', '.join(owners)} all have it; "
                             f"pass --recipe NAME (one of {', '.join(owners)})")
        if recipe is not None and recipe not in owners:
            raise StoreError(f"recipe '{recipe}' has no step '{step}' in {self.path}"
                             + (f"; recipes with it: {', '.join(owners)}" if owners else ""))
        row = self.con.execute(
            "SELECT run_id FROM runs WHERE run_id IN (SELECT run_id FROM run_rows WHERE step = ?) "
            + ("AND recipe = ? " if recipe else "") + "ORDER BY started_at DESC LIMIT 1",
            [step, recipe] if recipe else [step]).fetchone()
        if row is None:
            raise StoreError(f"no run has a step '{step}' in {self.path}")
        return row[0]

    def tick(self) -> None:
        """Wake the writer if the oldest buffered result is ``FLUSH_S`` old, and let go of the file once it has
        been held ``HOLD_S`` with nothing to write (the runner calls this every 50 ms while it waits, so a slow
        engine never keeps readers out)."""
        if self._buf.first_at and time.monotonic() - self._buf.first_at >= self.FLUSH_S:
            self._maybe_flush()
        elif self._con is not None and not self.read_only and time.monotonic() - self._opened_at >= self.HOLD_S:
            if self._db.acquire(blocking=False):   # a thread using the connection keeps it a moment longer
                try:
                    if not (self._buf.calls or self._buf.rows or self._buf.run_rows) and self._flushing is None:
                        self.release(idle=True)
                finally:
                    self._db.release()

    # ------------------------------------------------------------------ reads
    @_locked
    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run SQL; return (column names, rows).

        A writer flushes its buffer first, so a query sees everything written so far.

        Raises:
            StoreError: on a SQL error or a write refused by a read-only store.
        """
        if not self.read_only:
            self.flush(release=False)
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

    def iter_query(self, sql: str, params: Sequence[Any] | None = None, chunk: int = 4096) -> Any:
        """Run a SELECT and yield its rows ``chunk`` at a time (lists of tuples), holding the connection meanwhile.

        Raises:
            StoreError: on a SQL error.
        """
        with self._db:
            if not self.read_only:
                self.flush(release=False)
            try:
                cur = self.con.execute(sql, list(params) if params else None)
                while True:
                    rows = cur.fetchmany(chunk)
                    if not rows:
                        return
                    yield rows
            except duckdb.Error as exc:
                msg = str(exc)
                raise StoreError(msg.splitlines()[0] if msg else type(exc).__name__) from None

    @_locked
    def run_rows(self, run_id: str, step: str, status: str | None = "ok") -> list[tuple[str, dict[str, Any]]]:
        """(row_id, data) of the rows a run produced or reused for a step, ordered by creation."""
        sql = ("SELECT r.row_id, r.data FROM run_rows rr JOIN rows r ON r.row_id = rr.row_id "
               "WHERE rr.run_id = ? AND rr.step = ?")
        args: list[Any] = [run_id, step]
        if status:
            sql += " AND r.status = ?"
            args.append(status)
        sql += " ORDER BY rr.ord NULLS LAST, r.created_at, r.row_id"
        return [(rid, json.loads(d)) for rid, d in self.con.execute(sql, args).fetchall()]

    @_locked
    def latest_run(self, recipe: str | None = None) -> str | None:
        sql = "SELECT run_id FROM runs"
        args: list[Any] = []
        if recipe:
            sql += " WHERE recipe = ?"
            args.append(recipe)
        row = self.con.execute(sql + " ORDER BY started_at DESC LIMIT 1", args).fetchone()
        return row[0] if row else None

    @_locked
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
        if self.con.execute("SELECT 1 FROM rows WHERE row_id = ?", [row_id]).fetchone():   # the index, not a scan
            return row_id
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
