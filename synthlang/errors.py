"""One exception tree for synthlang, and rendering of diagnostics.

Every user-facing error carries structured fields (tests assert on those, not
on prose). Errors that point into a ``.synth`` file carry a :class:`Span` and
render as ``path:line:col: error: message``, the source line, a caret and a
hint, like miniwdl and Jinja2 do.

Tree::

    SynthError
    ├─ SourceError (has a span)
    │  ├─ SynthSyntaxError
    │  └─ CheckError
    ├─ Diagnostics (many SourceErrors, sorted)
    ├─ ConfigError
    ├─ DataError (row and field of a data file)
    ├─ EngineError → EngineUnavailable, GenerationError
    ├─ StoreError → SchemaVersionMismatch, StoreLocked
    ├─ BudgetExceeded
    └─ InternalError
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, order=True)
class Span:
    """A region of a source file; lines and columns are 1-based.

    Attributes:
        path: the file, as given by the user (relative paths stay relative).
        line: first line of the region.
        col: first column of the region.
        end_line: last line of the region.
        end_col: column just after the region on ``end_line``.
    """

    path: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


NO_SPAN = Span("<builtin>", 0, 0, 0, 0)

_SOURCES: dict[str, str] = {}


def remember_source(path: str, text: str) -> None:
    """Keep a file's text so diagnostics can quote its lines later."""
    _SOURCES[path] = text


def _source_line(path: str, line: int) -> str | None:
    text = _SOURCES.get(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        _SOURCES[path] = text
    lines = text.split("\n")
    if 1 <= line <= len(lines):
        # control characters (binary junk) would garble the terminal; one '?' each keeps the caret aligned
        return "".join(" " if ch == "\t" else ch if ch.isprintable() else "?" for ch in lines[line - 1].rstrip("\r"))
    return None


class SynthError(Exception):
    """Base of every error synthlang raises on purpose."""

    kind = "error"

    def render(self) -> str:
        """The message as the CLI prints it."""
        return f"error: {self}"


class SourceError(SynthError):
    """A user-fixable error that points into a ``.synth`` file.

    Attributes:
        message: what is wrong, naming the thing.
        span: where it is.
        hint: how to fix it, or ``None``.
        code: a stable machine-readable id such as ``unknown-name``.
        data: structured fields for tests and tools (names, candidates, ...).
    """

    code = "source-error"

    def __init__(
        self,
        message: str,
        span: Span,
        hint: str | None = None,
        code: str | None = None,
        **data: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        if code is not None:
            self.code = code
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        """Structured form: code, message, path, line, col, hint, data."""
        return {
            "code": self.code,
            "message": self.message,
            "path": self.span.path,
            "line": self.span.line,
            "col": self.span.col,
            "hint": self.hint,
            **({"data": self.data} if self.data else {}),
        }

    def render(self) -> str:
        out = [f"{self.span}: {self.kind}: {self.message}"]
        src = _source_line(self.span.path, self.span.line)
        if src is not None:
            out.append(f"  {src}")
            width = 1
            if self.span.end_line == self.span.line and self.span.end_col > self.span.col:
                width = self.span.end_col - self.span.col
            out.append("  " + " " * max(self.span.col - 1, 0) + "^" * width)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class SynthSyntaxError(SourceError):
    """The parser stopped at the first syntax error."""

    code = "syntax"


class CheckError(SourceError):
    """A semantic error found by the checker (unknown name, bad type, ...)."""

    code = "check"


class Diagnostics(SynthError):
    """Many :class:`SourceError` s, sorted by position; raised together.

    Attributes:
        errors: the errors, sorted by (path, line, col).
    """

    def __init__(self, errors: list[SourceError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.span.path, e.span.line, e.span.col, e.message))
        n = len(self.errors)
        super().__init__(f"{n} error{'s' if n != 1 else ''}")

    def render(self) -> str:
        body = "\n".join(e.render() for e in self.errors)
        return f"{body}\n{self}"


class ConfigError(SynthError):
    """A bad CLI flag, a missing environment variable or a bad path."""


class DataError(SynthError):
    """Bad data in a source file, naming the file, the row (1-based line) and the field.

    Attributes:
        path: the data file.
        row: 1-based row (line for JSONL/CSV), or ``None`` for the whole file.
        field: the field, or ``None``.
    """

    def __init__(self, message: str, path: str, row: int | None = None, field: str | None = None) -> None:
        where = path
        if row is not None:
            where += f": row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.row = row
        self.field = field


class EngineError(SynthError):
    """An inference engine failed."""


class EngineUnavailable(EngineError):
    """The engine's library or server cannot be reached or loaded."""


class GenerationError(EngineError):
    """One request failed.

    Attributes:
        retryable: whether trying the same request again may succeed.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class StoreError(SynthError):
    """The DuckDB store failed or refused an operation."""


class SchemaVersionMismatch(StoreError):
    """The database file was written by an incompatible synthlang."""


class StoreLocked(StoreError):
    """Another process (a running ``synth run``) holds the database for writing."""


class BudgetExceeded(SynthError):
    """A budget (calls, tokens, USD) would be exceeded; the run stops with its state saved."""


class InternalError(SynthError):
    """A bug in synthlang, never the user's fault."""


@dataclass
class ErrorList:
    """Collects source errors during a pass; raise them together at the end."""

    errors: list[SourceError] = field(default_factory=list)

    def add(self, err: SourceError) -> None:
        self.errors.append(err)

    def raise_if_any(self) -> None:
        if self.errors:
            raise Diagnostics(self.errors)
