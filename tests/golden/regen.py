"""Golden files for the checker and the planner: compute, compare, regenerate.

    python tests/golden/regen.py          # rewrite every expected file; review with `git diff tests/golden`

``invalid/NAME.synth`` → ``NAME.expected.json`` (the structured fields of every
diagnostic: code, message, path, line, col, hint, data) and
``NAME.expected.txt`` (the text ``synth check`` prints).
``valid/NAME.synth`` → ``NAME.plan.json`` (``synth plan --format json``).
A first line ``# args: --param name=value ...`` passes ``--param`` values.
Everything runs with the working directory set to this folder, so paths in
diagnostics are relative to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@contextlib.contextmanager
def in_golden_dir() -> Iterator[None]:
    old = os.getcwd()
    os.chdir(HERE)
    try:
        yield
    finally:
        os.chdir(old)


def case_params(path: Path) -> dict[str, str]:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    params: dict[str, str] = {}
    if first.startswith("# args:"):
        words = shlex.split(first[len("# args:"):])
        for flag, value in zip(words[::2], words[1::2], strict=False):
            assert flag == "--param", first
            k, _, v = value.partition("=")
            params[k] = v
    return params


def diagnose(rel: str) -> tuple[list[dict], str]:
    """(structured diagnostics, rendered text) of checking one recipe; run inside :func:`in_golden_dir`."""
    from synthlang.api import check_file
    from synthlang.errors import Diagnostics, SourceError, SynthError

    try:
        check_file(rel, case_params(HERE / rel))
    except Diagnostics as exc:
        return [e.as_dict() for e in exc.errors], exc.render() + "\n"
    except SourceError as exc:
        return [exc.as_dict()], exc.render() + "\n"
    except SynthError as exc:
        return [{"code": type(exc).__name__, "message": str(exc)}], exc.render() + "\n"
    return [], ""


def plan_json(rel: str) -> str:
    from synthlang.api import check_file, plan
    from synthlang.plan.estimate import to_json

    return to_json(plan(check_file(rel, case_params(HERE / rel))))


def invalid_cases() -> list[str]:
    return sorted(p.name for p in (HERE / "invalid").glob("*.synth"))


def valid_cases() -> list[str]:
    return sorted(p.name for p in (HERE / "valid").glob("*.synth"))


def expected_invalid(name: str) -> tuple[list[dict], str]:
    stem = HERE / "invalid" / name[: -len(".synth")]
    return (json.loads(stem.with_suffix(".expected.json").read_text(encoding="utf-8")),
            stem.with_suffix(".expected.txt").read_text(encoding="utf-8"))


def expected_plan(name: str) -> str:
    return (HERE / "valid" / name[: -len(".synth")]).with_suffix(".plan.json").read_text(encoding="utf-8")


def main() -> int:
    sys.path.insert(0, str(REPO))
    n = 0
    with in_golden_dir():
        for name in invalid_cases():
            diags, text = diagnose(f"invalid/{name}")
            stem = HERE / "invalid" / name[: -len(".synth")]
            stem.with_suffix(".expected.json").write_text(json.dumps(diags, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            stem.with_suffix(".expected.txt").write_text(text, encoding="utf-8")
            if not diags:
                print(f"warning: invalid/{name} has no diagnostics", file=sys.stderr)
            n += 1
        for name in valid_cases():
            (HERE / "valid" / name[: -len(".synth")]).with_suffix(".plan.json").write_text(plan_json(f"valid/{name}"), encoding="utf-8")
            n += 1
    print(f"regenerated {n} golden files under {HERE.relative_to(REPO)}; review them with: git diff tests/golden")
    return 0


if __name__ == "__main__":
    sys.exit(main())
