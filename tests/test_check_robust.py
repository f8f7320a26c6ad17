"""``synth check`` never shows a traceback: truncated recipes, binary junk, empty files, mutated bytes."""

from __future__ import annotations

import random

import pytest
from conftest import RECIPES

from synthlang.cli.main import main as synth_main


@pytest.fixture
def quiet(monkeypatch):
    """Silence the CLI's consoles (thousands of diagnostics) while keeping exit statuses."""
    import io

    from synthlang.cli import common, main

    monkeypatch.setattr(main.err_console, "_file", io.StringIO())
    monkeypatch.setattr(common.console, "_file", io.StringIO())


def _check(path) -> int:
    return synth_main(["check", str(path)])


def test_every_truncation_of_quickstart_checks_cleanly(tmp_path, quiet):
    data = (RECIPES / "quickstart.synth").read_bytes()
    (tmp_path / "data").symlink_to(RECIPES / "data")
    p = tmp_path / "t.synth"
    statuses = set()
    for cut in range(len(data) + 1):
        p.write_bytes(data[:cut])
        status = _check(p)
        assert status in (0, 1), f"cut at byte {cut}: exit status {status}"
        statuses.add(status)
    assert statuses == {0, 1}


@pytest.mark.parametrize("blob", [b"", b"\n\n", b"\x00" * 10, b"\xff\xfe\xfa", bytes(range(256)), b"\xef\xbb\xbfrecipe x\n",
                                  b"((((((((((" * 500, b"param x: int = " + b"-" * 5000 + b"1", b'template t = """' + b"x" * 1000])
def test_junk_files(tmp_path, quiet, blob):
    p = tmp_path / "j.synth"
    p.write_bytes(blob)
    assert _check(p) in (0, 1)


def test_random_byte_mutations(tmp_path, quiet):
    data = bytearray((RECIPES / "quickstart.synth").read_bytes())
    (tmp_path / "data").symlink_to(RECIPES / "data")
    rng = random.Random(1234)
    p = tmp_path / "m.synth"
    alphabet = b'(){}[]=,.:"#\n -+*/<>!0123456789abcxyz_\x00\xff'
    for _ in range(300):
        d = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(d))
            if rng.random() < 0.5:
                d[i] = rng.choice(alphabet)
            else:
                del d[i]
        p.write_bytes(bytes(d))
        assert _check(p) in (0, 1), bytes(d).decode("utf-8", "replace")


def test_missing_file_and_folder(tmp_path, quiet):
    assert _check(tmp_path / "nope.synth") == 1
    assert _check(tmp_path) == 1


@pytest.mark.parametrize("decl", [
    'source s = jsonl("a\\x00b") { q: str }',
    'template t = file("a\\x00b")',
    'use "a\\x00b.synth" as u',
    'source s = sql("SELECT 1 AS q", db="a\\x00b") { q: str }',
    'source s = jsonl("' + "a" * 5000 + '") { q: str }',
    'template t = file("/")',
    'source s = jsonl("x", limit=1/0) { q: str }',
])
def test_unusable_paths_and_constants_are_diagnostics(tmp_path, quiet, decl):
    p = tmp_path / "e.synth"
    p.write_text(decl + "\n", encoding="utf-8")
    assert _check(p) == 1


def test_generated_recipes_check_without_internal_errors(tmp_path, quiet):
    """Random syntactically valid recipes (the fmt round-trip generator) only ever give diagnostics."""
    from hypothesis import HealthCheck, given, settings
    from test_fmt import recipes

    (tmp_path / "x.jsonl").write_text('{"a": 1}\n', encoding="utf-8")
    p = tmp_path / "g.synth"

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(recipes())
    def run(text):
        p.write_text(text, encoding="utf-8")
        assert _check(p) in (0, 1), text

    run()
