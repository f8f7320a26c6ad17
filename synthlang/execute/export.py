"""Exports: one code path for a recipe's ``export`` and ``synth export``.

:func:`export_step` reads a step's rows for a run from the store (SQL, in input order; a loop's
fed rows and a fed pool included, see :mod:`synthlang.outputs.read`), shapes them into a training
format (:mod:`synthlang.outputs.shapes`), optionally splits them by seed ancestor
(:mod:`synthlang.outputs.splits`), and writes JSONL, Parquet or a Hugging Face dataset folder with
typed ``datasets.Features`` and a dataset card (:mod:`synthlang.outputs.card`).

Writes are safe against a shared repository that plants symlinks (issue 11, item 2): every file is
first written to a fresh temp file or folder made by :mod:`tempfile` in the target folder
(``O_EXCL``: never an existing path, never through a symlink) and then renamed over the target,
and every written path is checked, symlinks resolved, to stay inside the folder it was meant to
be in (the project directory for a recipe's export).

Text goes out byte-identical (``ensure_ascii=False``, UTF-8 everywhere). JSONL never holds
``NaN`` or ``Infinity`` (strict JSON readers refuse them): such values are written as ``null``
and counted in a warning.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from synthlang.errors import ConfigError
from synthlang.outputs.shapes import FORMATS, PLAIN, mapping_summary, parse_split, resolve_slots
from synthlang.store.store import ORJSON_OPTS


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        step: the exported step (or loop, or pool).
        run_id: the run whose rows were exported.
        path: the file or folder written.
        format: the format (``chat``, ``jsonl``, ...).
        container: ``jsonl``, ``parquet`` or ``hf``.
        rows: examples written (all splits).
        source_rows: rows read from the store.
        splits: split name -> (groups, examples), empty without ``split``.
        warnings: things the user should know (partial run, 0 rows, NaN written as null, licences).
        notes: how the examples were made (mapping, skipped rows).
        card: the README.md written, if any.
    """

    step: str
    run_id: str
    path: Path
    format: str
    container: str
    rows: int = 0
    source_rows: int = 0
    splits: dict[str, tuple[int, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    card: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    in_run: bool = False


def container_for(path: str | Path, fmt: str) -> str:
    """The file kind a format goes into: ``jsonl``/``parquet`` by the path's extension, else a HF dataset folder."""
    if fmt in PLAIN:
        return fmt
    s = str(path)
    return "jsonl" if s.endswith(".jsonl") else "parquet" if s.endswith(".parquet") else "hf"


def export_step(store: Any, step: str, path: str | Path, fmt: str, options: dict[str, Any] | None = None, *,
                run_id: str | None = None, program: Any = None, include_failed: bool = False, in_run: bool = False,
                root: Path | None = None) -> ExportResult:
    """Export a step's rows of one run.

    Args:
        store: an open :class:`synthlang.store.Store`.
        step: a step, source, loop or fed pool name.
        path: a ``.jsonl`` or ``.parquet`` file, or a folder (HF ``save_to_disk``).
        fmt: one of :data:`synthlang.outputs.shapes.FORMATS`.
        options: checked options (see :func:`synthlang.outputs.shapes.check_options`); a training format's
            omitted slots are guessed from field names.
        run_id: the run (default: the latest run that made the step).
        program: the checked program (loops, field types, recipe text); ``None`` to rebuild it from the run's file.
        include_failed: also export rows whose status is failed (plain formats).
        in_run: called by the runner at the end of its own run (no partial-run warning).
        root: every written path must stay inside this folder once symlinks are resolved (``None``: no limit).

    Returns:
        An :class:`ExportResult`.

    Raises:
        ConfigError: unknown format, no run with the step, a template failing on a row, a path leading out of
            ``root`` or unwritable.
    """
    from synthlang.outputs import read
    from synthlang.outputs.build import conform, features, shape_rows
    from synthlang.outputs.splits import split_examples

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}' ({', '.join(FORMATS)})")
    opts = dict(options or {})
    if isinstance(opts.get("split"), str):
        opts["split"] = parse_split(opts["split"])
    if run_id is None:
        run_id = read.find_run(store, step, program)
    info = read.run_info(store, run_id)
    run_id = info.run_id
    if program is None:
        program = read.load_program(info)
    path = Path(path)
    res = ExportResult(step, run_id, path, fmt, container_for(path, fmt), options=opts, in_run=in_run)
    if not in_run and info.status != "finished":
        why = {"budget": "was stopped by its budget", "interrupted": "was interrupted", "killed": "was killed",
               "running": "is still running (or was killed)", "failed": "failed"}.get(info.status, f"is {info.status}")
        res.warnings.append(f"run {run_id} {why}: its '{step}' rows are partial (choose a run with --run; list: synth runs)")
    known = read.steps_of_run(store, run_id)
    if step not in known and read.loop_of(program, step) is None:
        raise ConfigError(f"run {run_id} has no step '{step}'" + (f"; steps: {', '.join(sorted(known))}" if known else ""))
    types = read.field_types(program, step)
    if (res.container == "jsonl" and fmt in PLAIN and not opts.get("split") and types and hasattr(store, "iter_query")
            and read.loop_of(program, step) is None and not read.fed_by(program, step)):
        return _stream_jsonl(store, res, run_id, step, list(types), opts, include_failed, root)
    rows = read.export_rows_of(store, run_id, step, program, include_failed)
    res.source_rows = len(rows)
    types = read.field_types(program, step)
    field_names = list(types) if types else list(dict.fromkeys(k for r in rows for k in r.data))
    _check_fields(fmt, opts, step, field_names)
    if fmt not in PLAIN:
        res.notes.append(f"{fmt}: {mapping_summary(fmt, opts)}")
    if fmt == "preference" and "rank_by" in opts:
        groups = read.sample_groups(store, [r.row_id for r in rows])
        for r in rows:
            r.group = groups.get(r.row_id)
    examples, origin, notes = shape_rows(fmt, rows, opts)
    res.notes += notes
    if not rows:
        res.warnings.append(_no_rows_warning(store, run_id, step))
    elif not examples:
        res.warnings.append(f"0 {fmt} examples from {len(rows)} rows of '{step}': " + "; ".join(notes))
    # JSONL keeps JSON's own types; Arrow files (parquet, hf) get Features declared from the step's field types
    feats = features(fmt, opts, types, examples) if res.container != "jsonl" else None
    examples = conform(examples, feats)
    nonfinite = _scrub(examples)
    if nonfinite:
        res.warnings.append(f"{nonfinite} NaN/Infinity values written as null")
    parts: dict[str, list[dict[str, Any]]] | None = None
    if opts.get("split"):
        anc = read.seed_ancestors(store, [r.row_id for r in origin])
        sr = split_examples(examples, origin, anc, opts["split"], opts.get("stratify"), int(opts.get("seed") or 0))
        parts = sr.examples
        res.splits = {k: (sr.groups[k], sr.rows[k]) for k in sr.examples}
    res.rows = len(examples)
    _write(res, examples, parts, feats, root)
    if res.container == "hf" and opts.get("card", True) is not False:
        from synthlang.outputs.card import write_card

        res.card = write_card(store, res, info, program, root=root)
    return res


def _scrub(examples: list[dict[str, Any]]) -> int:
    """Replace NaN/Infinity (anywhere inside values) with None, in place; return how many."""
    count = 0

    def fix(v: Any) -> Any:
        nonlocal count
        if isinstance(v, float) and not math.isfinite(v):
            count += 1
            return None
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    for e in examples:
        for k, v in e.items():
            if isinstance(v, (float, dict, list)):
                e[k] = fix(v)
    return count


# ------------------------------------------------------------------ safe writing

def confine(path: Path, root: Path | None) -> Path:
    """``path`` with symlinks resolved, refused when it leaves ``root`` (also resolved).

    Raises:
        ConfigError: the path (or a symlink on the way) leads outside ``root``.
    """
    real = Path(os.path.realpath(path))
    if root is not None:
        r = Path(os.path.realpath(root))
        if not real.is_relative_to(r):
            raise ConfigError(f"export path {path} leads outside the project directory {r} (resolved: {real}); "
                              "a symlink on the way points elsewhere")
    return real


def _prepare(path: Path, root: Path | None) -> Path:
    parent = path.parent
    confine(parent, root)   # refuse before creating anything through a symlinked folder
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write export {path}: {exc.strerror or exc}") from None
    confine(parent, root)
    if path.is_symlink() or path.exists():
        confine(path, root)
    return parent


def _atomic_file(path: Path, root: Path | None, write: Any, binary: bool = False) -> None:
    """Write through a fresh temp file (``mkstemp``: O_EXCL, mode 0600 then 0644) in the target folder, then rename."""
    parent = _prepare(path, root)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": "\n"})) as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)   # rename(2) replaces a symlink at `path` itself, never its target
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _looks_like_export(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return not names or bool(names & {"dataset_info.json", "dataset_dict.json", "state.json", "README.md"})


def _atomic_folder(path: Path, root: Path | None, write: Any) -> None:
    """Write a folder into a fresh temp folder (``mkdtemp``) beside it, then swap it in."""
    parent = _prepare(path, root)
    if path.is_symlink():
        raise ConfigError(f"export folder {path} is a symlink; refusing to write through it")
    if path.exists() and (not path.is_dir() or not _looks_like_export(path)):
        raise ConfigError(f"export folder {path} exists and does not look like an earlier export; "
                          "refusing to replace it (remove it or pick another path)")
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(tmp)
        for p in tmp.rglob("*"):   # nothing inside may point out (save_to_disk writes plain files)
            if p.is_symlink():
                raise ConfigError(f"export wrote a symlink {p}; refusing")
        os.chmod(tmp, 0o755)
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_fields(fmt: str, opts: dict[str, Any], step: str, field_names: list[str]) -> None:
    """The export's slots and ``fields``/``stratify`` options name fields the step has.

    Raises:
        ConfigError: naming the step, the option and the step's fields.
    """
    problem = resolve_slots(fmt, opts, field_names)
    if problem:
        raise ConfigError(f"export of '{step}' as {fmt}: {problem}")
    for want in ("fields", "stratify"):
        vals = opts.get(want) if want == "fields" else [opts[want]] if opts.get(want) else []
        for f in vals or []:
            if f not in field_names:
                raise ConfigError(f"export of '{step}': unknown field '{f}' in {want}; fields: {', '.join(field_names)}")


def _no_rows_warning(store: Any, run_id: str, step: str) -> str:
    """The warning for a step with nothing to export, with how many of its rows failed and how to see why."""
    _, failed = store.query("SELECT count(*) FROM run_rows rr JOIN rows r USING (row_id) WHERE rr.run_id=? AND rr.step=? "
                            "AND r.status='failed'", [run_id, step])
    n_failed = failed[0][0] if failed else 0
    return (f"'{step}' has 0 rows to export in run {run_id}"
            + (f" ({n_failed} failed; see them with: synth query \"SELECT error, count(*) FROM failures "
               f"WHERE step='{step}' GROUP BY ALL\")" if n_failed else ""))


def _stream_jsonl(store: Any, res: ExportResult, run_id: str, step: str, field_names: list[str], opts: dict[str, Any],
                  include_failed: bool, root: Path | None) -> ExportResult:
    """A plain JSONL export without splits, streamed from the store in input order, a chunk of rows at a time
    (memory bounded by the chunk, not the step; the same lines as the whole-list path)."""
    from synthlang.outputs import read
    from synthlang.outputs.build import shape_rows

    _check_fields(res.format, opts, step, field_names)
    nonfinite = 0

    def write(f: Any) -> None:
        nonlocal nonfinite
        for chunk in read.iter_step_rows(store, run_id, step, include_failed):
            res.source_rows += len(chunk)
            examples, _, _ = shape_rows(res.format, chunk, opts)
            nonfinite += _scrub(examples)
            res.rows += len(examples)
            f.write("".join(jsonl_line(r) for r in examples))

    _atomic_file(res.path, root, write)
    if nonfinite:
        res.warnings.append(f"{nonfinite} NaN/Infinity values written as null")
    if not res.rows:
        res.warnings.append(_no_rows_warning(store, run_id, step))
    return res


def _write(res: ExportResult, examples: list[dict[str, Any]], parts: dict[str, list[dict[str, Any]]] | None,
           feats: Any, root: Path | None) -> None:
    path = res.path
    try:
        if res.container == "jsonl":
            targets = {path: examples} if parts is None else {_split_path(path, k): v for k, v in parts.items()}
            for p, recs in targets.items():
                _atomic_file(p, root, lambda f, recs=recs: [f.write(jsonl_line(r)) for r in recs])
        elif res.container == "parquet":
            import pyarrow.parquet as pq

            targets = {path: examples} if parts is None else {_split_path(path, k): v for k, v in parts.items()}
            for p, recs in targets.items():
                table = _arrow(recs, feats)
                _atomic_file(p, root, lambda f, table=table: pq.write_table(table, f), binary=True)
        else:
            import datasets

            datasets.disable_progress_bars()

            def save(tmp: Path) -> None:
                # num_shards=1 for an empty split: datasets writes no shard for 0 rows and cannot load that back
                if parts is None:
                    _dataset(examples, feats).save_to_disk(str(tmp), **({} if examples else {"num_shards": 1}))
                else:
                    datasets.DatasetDict({k: _dataset(v, feats) for k, v in parts.items()}).save_to_disk(
                        str(tmp), **({} if all(parts.values()) else {"num_shards": {k: 1 for k in parts}}))

            _atomic_folder(path, root, save)
    except OSError as exc:
        raise ConfigError(f"cannot write export {path}: {exc.strerror or exc}") from None


def _split_path(path: Path, split: str) -> Path:
    return path.with_name(f"{path.stem}.{split}{path.suffix}")


def _arrow(recs: list[dict[str, Any]], feats: Any) -> Any:
    import pyarrow as pa

    if feats is not None:
        return pa.Table.from_pylist(recs, schema=feats.arrow_schema)
    return pa.Table.from_pylist(normalise_columns(recs)) if recs else pa.table({})


def _dataset(recs: list[dict[str, Any]], feats: Any) -> Any:
    from datasets import Dataset

    if feats is not None:
        if not recs:
            return Dataset.from_dict({k: [] for k in feats}, features=feats)
        return Dataset.from_list(recs, features=feats)
    return Dataset(_arrow(recs, None))


def export_rows(rows: Sequence[tuple[str, dict[str, Any]]], path: Path, fmt: str, options: dict[str, Any] | None = None) -> int:
    """Write ``(row_id, fields)`` pairs as they are (no store): JSONL, Parquet or a HF folder; returns the count.

    Kept for callers that hold rows in memory (a loop's training data); exports of a step use :func:`export_step`.

    Raises:
        ConfigError: unknown format or unwritable path.
    """
    from synthlang.outputs.build import shape_rows
    from synthlang.outputs.read import Row

    if fmt not in PLAIN:
        raise ConfigError(f"unknown export format '{fmt}' (jsonl, hf, parquet)")
    recs, _, _ = shape_rows(fmt, [Row(rid, d) for rid, d in rows], options or {})
    _scrub(recs)
    res = ExportResult("", "", Path(path), fmt, fmt)
    _write(res, recs, None, None, None)
    return len(recs)


_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def jsonl_line(rec: dict[str, Any]) -> str:
    """One JSONL line: UTF-8 text as is, except the characters that readers splitting on Unicode
    line boundaries (``str.splitlines``) would break on, which are JSON-escaped (they decode back
    to the same characters). Strict JSON: NaN/Infinity are refused (callers scrub them to null first)."""
    try:   # orjson: ~10x json's speed; NaN/Infinity become null, as _scrub makes them
        line = orjson.dumps(rec, default=str, option=ORJSON_OPTS).decode()
    except (orjson.JSONEncodeError, TypeError):   # an int beyond 64 bits, a non-text key orjson refuses
        try:
            line = json.dumps(rec, ensure_ascii=False, allow_nan=False, default=str)
        except ValueError:
            _scrub([rec])
            line = json.dumps(rec, ensure_ascii=False, allow_nan=False, default=str)
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


def export_program(store: Any, program: Any, run_id: str, summary: Any = None) -> list[ExportResult]:
    """Run a recipe's ``export`` declarations at the end of its run (the runner calls this; ``synth export`` calls
    :func:`export_step`, the same path). Each export is recorded in the store's ``exports`` table; lines for the
    run summary go to ``summary.exports`` and ``summary.export_notes``.

    A path that was inside the project when checked must still be inside it once symlinks are resolved.
    """
    from synthlang.check.checker import project_root

    root = project_root(program.base_dir)
    out = []
    for ex in program.exports:
        lexical = Path(os.path.normpath(ex.path))
        confined = root if lexical.is_relative_to(root) or not lexical.is_absolute() else None
        res = export_step(store, ex.step, ex.path, ex.format, ex.options, run_id=run_id, program=program, in_run=True,
                          root=confined)
        store.record_export(run_id, ex.step, str(ex.path), ex.format, res.rows)
        out.append(res)
        if ex.options.get("push_to_hub"):
            from synthlang.outputs.push import push

            pushed = push(store, ex.step, ex.options["push_to_hub"], ex.format if ex.format not in ("jsonl", "parquet") else "hf",
                          {k: v for k, v in ex.options.items() if k not in ("push_to_hub", "private")}, run_id=run_id,
                          program=program, private=ex.options.get("private"), in_run=True)
            if summary is not None:
                summary.export_notes.append(f"export {ex.step}: pushed {len(pushed.files)} files to {pushed.url}")
        if summary is not None:
            summary.exports.append((ex.step, str(ex.path), ex.format, res.rows))
            summary.export_notes.extend(f"export {ex.step}: {w}" for w in res.warnings)
            summary.export_notes.extend(
                f"export {ex.step}: split {k}: {n} examples from {g} seed groups" for k, (g, n) in res.splits.items())
    return out
