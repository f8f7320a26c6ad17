"""Which ``train=`` commands of a loop may run: allowed per recipe file, by path and content digest.

A shared recipe must not run arbitrary code (docs/reliability.md, "Untrusted recipes"), so a loop's
external training command (``loop grow(rounds=3, train="python train.py {data} {out}")``) only runs
when the user allowed the recipe file that declares it::

    synth run recipes/llm2llm.synth --allow-train recipes/llm2llm.synth

An allowance is ``RESOLVED_PATH@DIGEST`` (:func:`allowance`): the file's path with symlinks resolved
and the first 16 hex digits of the sha256 of its bytes. Editing the file, or a recipe that imports
it, needs its own allowance. The environment variable ``SYNTH_ALLOW_TRAIN`` holds allowances in
this form (several joined by ``os.pathsep``), so a shell can keep one for an exact file content;
the old global ``SYNTH_ALLOW_TRAIN=1`` allows nothing.

Placeholders in the command are ``{data}`` (a JSONL of the pool so far), ``{out}`` (a folder to
write into) and ``{round}``; :func:`placeholder_problem` finds any other at check time.
"""

from __future__ import annotations

import hashlib
import os
import string
from pathlib import Path
from typing import Any

from synthlang.errors import ConfigError

ENV = "SYNTH_ALLOW_TRAIN"
"""The environment variable holding allowances (``PATH@DIGEST``, joined by ``os.pathsep``)."""
PLACEHOLDERS = ("data", "out", "round")
"""Placeholders a ``train=`` command may use."""


def placeholder_problem(command: str) -> str | None:
    """Why ``command`` cannot be filled in, or ``None``.

    Uses :class:`string.Formatter` (the same parser ``str.format`` uses when the loop runs it).

    Returns:
        A sentence naming the bad placeholder or brace, or ``None``.
    """
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(command) if f is not None]
    except ValueError as exc:
        return f"{exc} (write a literal brace as {{{{ or }}}})"
    for f in fields:
        if f not in PLACEHOLDERS:
            shown = "{" + f + "}" if f else "{}"
            return f"unknown placeholder {shown}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
    return None


def file_digest(path: str | Path) -> str:
    """First 16 hex digits of the sha256 of a file's bytes.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise ConfigError(f"--allow-train {path}: cannot read it ({exc.strerror or exc})") from None


def allowance(path: str | Path) -> str:
    """The allowance for a recipe file as it is now: ``RESOLVED_PATH@DIGEST``.

    Raises:
        ConfigError: the file cannot be read.
    """
    p = Path(path).resolve()
    return f"{p}@{file_digest(p)}"


def allow(paths: list[str]) -> None:
    """Add allowances for ``paths`` (``--allow-train``) to :data:`ENV` of this process.

    Raises:
        ConfigError: a file cannot be read.
    """
    if not paths:
        return
    entries = [allowance(p) for p in paths]
    have = [e for e in os.environ.get(ENV, "").split(os.pathsep) if "@" in e]
    os.environ[ENV] = os.pathsep.join(dict.fromkeys(have + entries))


def _allowed() -> set[str]:
    return {e for e in os.environ.get(ENV, "").split(os.pathsep) if "@" in e}


def loop_file(lp: Any) -> Path | None:
    """The recipe file that declares loop ``lp`` (from its span), resolved."""
    span = getattr(lp, "span", None)
    return Path(span.path).resolve() if span is not None and span.path and not span.path.startswith("<") else None


def is_allowed(lp: Any) -> bool:
    """Whether loop ``lp``'s ``train=`` command may run (its file, as it is now, was allowed)."""
    f = loop_file(lp)
    if f is None or not f.exists():
        return False
    return f"{f}@{file_digest(f)}" in _allowed()


def commands(program: Any) -> list[tuple[str, str, Path | None]]:
    """``(loop name, command, recipe file)`` for every loop of ``program`` with a ``train=`` command."""
    return [(lp.name, lp.train, loop_file(lp)) for lp in getattr(program, "loops", []) if lp.train]


def describe(program: Any) -> list[str]:
    """Lines for ``synth check`` / ``synth plan``: each command, and whether it is allowed now."""
    out = []
    for lp in getattr(program, "loops", []):
        if not lp.train:
            continue
        f = loop_file(lp)
        state = "allowed" if is_allowed(lp) else f"refused unless: synth run ... --allow-train {_shown(f)}"
        out.append(f"loop '{lp.name}' runs an external command between rounds: {lp.train}   ({state})")
    return out


def require_allowed(program: Any) -> None:
    """Refuse, before any call, a program whose ``train=`` commands were not allowed.

    Raises:
        ConfigError: naming each refused loop, its command and the flag that allows it.
    """
    refused = [lp for lp in getattr(program, "loops", []) if lp.train and not is_allowed(lp)]
    if not refused:
        return
    lines = [f"loop '{lp.name}' ({_shown(loop_file(lp))}) runs: {lp.train}" for lp in refused]
    files = sorted({_shown(loop_file(lp)) for lp in refused})
    legacy = " (SYNTH_ALLOW_TRAIN=1 no longer allows every recipe)" if os.environ.get(ENV) == "1" else ""
    raise ConfigError("this recipe runs external commands, and they were not allowed" + legacy + ":\n  "
                      + "\n  ".join(lines) + "\nread them, then allow them for this file's current content with "
                      + " ".join(f"--allow-train {f}" for f in files))


def _shown(f: Path | None) -> str:
    if f is None:
        return "?"
    try:
        return os.path.relpath(f)
    except ValueError:
        return str(f)
