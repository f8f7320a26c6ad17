"""CLI behaviour that needs no model: errors without tracebacks, read-only query, --db."""

from __future__ import annotations

from conftest import synth, write


def test_syntax_error_prints_position_and_caret(tmp_path):
    write(tmp_path / "bad.synth", "recipe r\nmodel m = embedded(temperature=)\n")
    r = synth("run", "bad.synth", cwd=tmp_path)
    assert r.returncode == 1
    assert "bad.synth:2:32: error: unexpected ')'" in r.stderr
    assert "^" in r.stderr and "Traceback" not in r.stderr


def test_check_clean_and_dirty(tmp_path):
    ok = synth("check", "recipes/quickstart.synth")
    assert ok.returncode == 0, ok.stderr
    write(tmp_path / "d.synth", 'step s = answr(seeds)\n')
    bad = synth("check", "d.synth", cwd=tmp_path)
    assert bad.returncode == 1 and "unknown operator 'answr'" in bad.stderr and "did you mean 'answer'?" in bad.stderr


def test_query_is_read_only_and_missing_db_is_clear(tmp_path):
    r = synth("query", "select 1", "--db", str(tmp_path / "none.duckdb"))
    assert r.returncode == 1 and "no database" in r.stderr and "Traceback" not in r.stderr
    import duckdb

    from synthlang.store import Store

    Store(tmp_path / "s.duckdb").close()
    r = synth("query", "delete from rows", "--db", str(tmp_path / "s.duckdb"))
    assert r.returncode == 1 and "read-only" in r.stderr
    assert duckdb  # imported to make sure the store exists for the next line
    r = synth("query", "select count(*) as n from rows", "--db", str(tmp_path / "s.duckdb"))
    assert r.returncode == 0 and "1 row" in r.stdout


def test_plan_json(tmp_path):
    import json

    r = synth("plan", "recipes/quickstart.synth", "--format", "json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [s["name"] for s in plan["steps"]] == ["rephrased", "answered", "verified"]
    assert plan["steps"][0]["calls"] == 20 and plan["steps"][2]["calls"] == 0


def test_init_creates_a_recipe_that_checks(tmp_path):
    r = synth("init", str(tmp_path / "proj"), "--name", "demo")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "proj" / "demo.synth").exists()
    c = synth("check", str(tmp_path / "proj" / "demo.synth"))
    assert c.returncode == 0, c.stderr
    again = synth("init", str(tmp_path / "proj"), "--name", "demo")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_mistyped_engine_in_model_flag_gives_one_error():
    r = synth("plan", "recipes/quickstart.synth", "--model", "teacher=embeded()")
    assert r.returncode == 1
    assert "unknown engine 'embeded'" in r.stderr and "did you mean 'embedded'?" in r.stderr
    assert "unknown model" not in r.stderr and r.stderr.strip().endswith("1 error")
