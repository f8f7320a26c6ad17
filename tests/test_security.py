"""Issue 11, security: a shared recipe cannot read or write outside its project, wipe the call cache,
exhaust the machine through its templates, run commands it was not allowed, or leak an API key.

Each case is the exact input from the issue, in a fresh folder (no ``.git`` above it) whose
``data/g.jsonl`` holds the first lines of the shipped GSM8K train file. The engine is the fake one
(what is under test is checking, sources, templates and the store).
"""

from __future__ import annotations

import json
import time

import duckdb
import pytest
from conftest import REPO, synth, write

import synthlang
from synthlang.errors import Diagnostics

GSM = (REPO / "recipes/data/gsm8k/train_first1000.jsonl").read_text(encoding="utf-8").splitlines()[:4]

BASE = """recipe s "security"
model m = fake(temperature=0.5, max_tokens=32)
source g = jsonl("data/g.jsonl") {
  question: str
  answer: str
}
"""


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "proj"
    write(root / "data" / "g.jsonl", "\n".join(GSM) + "\n")
    write(tmp_path / "secret.txt", "TOP-SECRET-42")
    return root


def _prime(root):
    """One real run, so the store has calls, rows and lineage to protect."""
    p = write(root / "first.synth", BASE + "step r = rephrase(g, model=m) -> rq\n")
    return synthlang.run(synthlang.check_file(p), db=root / "db.duckdb")


def _count(root, table):
    con = duckdb.connect(str(root / "db.duckdb"), read_only=True)
    try:
        return con.execute(f"select count(*) from {table}").fetchone()[0]
    finally:
        con.close()


# ------------------------------------------------------------ item 1: sql sources
HOSTILE_SQL = [
    ("DELETE FROM calls; DELETE FROM rows; SELECT 'q' AS question", "statements"),
    ("DROP TABLE lineage; SELECT 'q' AS question", "statements"),
    ("DELETE FROM calls", "DELETE"),
    ("COPY rows TO '/tmp/synth-leak.csv'", "COPY"),
    ("ATTACH '/tmp/synth-elsewhere.duckdb' AS x", "ATTACH"),
    ("INSTALL httpfs", "LOAD"),
    ("CREATE TABLE x AS SELECT 1 AS question", "CREATE"),
    ("UPDATE runs SET status = 'x'", "UPDATE"),
    ("PRAGMA database_list", "PRAGMA"),
    ("SET enable_external_access = true", "SET"),
    ("SELEC 1", "not valid SQL"),
]


@pytest.mark.parametrize("sql,word", HOSTILE_SQL)
def test_sql_source_that_is_not_one_select_is_a_positioned_check_error(proj, sql, word):
    write(proj / "r.synth", BASE + f'source e = sql("{sql}") {{\n  question: str\n}}\n')
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    [e] = ei.value.errors
    assert e.code == "sql-not-select" and (e.span.line, e.span.col) == (7, 16), e
    assert word in e.message and "SELECT" in (e.hint or "")


@pytest.mark.parametrize("sql", [
    "SELECT content AS question FROM read_text('../secret.txt')",
    "SELECT column0 AS question FROM read_csv('/etc/passwd', header=false)",
    "SELECT * FROM read_json_auto('/etc/hostname')",
    "WITH t AS (SELECT content AS question FROM read_text('../secret.txt')) SELECT question FROM t",
])
def test_a_select_cannot_read_files(proj, sql):
    _prime(proj)
    calls = _count(proj, "calls")
    p = write(proj / "r.synth", BASE + f'source e = sql("{sql}") {{\n  question: str\n}}\n'
              'step x = rephrase(e, model=m) -> rq\n')
    prog = synthlang.check_file(p)   # a SELECT passes the checker; the connection refuses file access
    with pytest.raises(synthlang.errors.DataError) as ei:
        synthlang.run(prog, db=proj / "db.duckdb")
    assert "SQL error" in str(ei.value) and "disabled by configuration" in str(ei.value), ei.value
    assert _count(proj, "calls") == calls
    con = duckdb.connect(str(proj / "db.duckdb"), read_only=True)
    assert not [r for r in con.execute("select data from rows").fetchall() if "TOP-SECRET" in r[0]]
    con.close()


def test_cli_run_of_a_destructive_sql_source_is_refused_before_anything_runs(proj):
    _prime(proj)
    before = (_count(proj, "calls"), _count(proj, "rows"), _count(proj, "lineage"))
    write(proj / "r.synth", BASE + 'source e = sql("DELETE FROM calls; DELETE FROM rows; SELECT \'q\' AS question") '
          '{\n  question: str\n}\nstep x = rephrase(e, model=m) -> rq\n')
    r = synth("run", "r.synth", "--db", "db.duckdb", "--quiet", cwd=proj)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "r.synth:7:16: error: sql source 'e': 3 statements" in r.stderr, r.stderr
    assert (_count(proj, "calls"), _count(proj, "rows"), _count(proj, "lineage")) == before


def test_a_plain_select_over_the_runs_store_still_works(proj):
    _prime(proj)
    p = write(proj / "r.synth", BASE + 'source e = sql("WITH t AS (SELECT data->>\'rq\' AS question FROM rows '
              'WHERE step = \'r\') SELECT question FROM t ORDER BY question") {\n  question: str\n}\n'
              'step x = rephrase(e, model=m) -> rq\n')
    s = synthlang.run(synthlang.check_file(p), db=proj / "db.duckdb")
    by = {x.name: x for x in s.steps}
    assert by["e"].rows_out == 4 and by["x"].calls_made == 4
    assert synthlang.plan(synthlang.check_file(p))   # plan counts on the default db: never fails


# ------------------------------------------------------------ item 3: run lock on the resolved path
def test_two_writers_through_a_symlinked_db_are_refused(proj):
    from synthlang.errors import StoreLocked
    from synthlang.store import Store

    (proj / "real").mkdir()
    (proj / "alias.duckdb").symlink_to(proj / "real" / "s.duckdb")
    with Store(proj / "real" / "s.duckdb"):
        with pytest.raises(StoreLocked) as ei:
            Store(proj / "alias.duckdb")
        assert "another synthlang process" in str(ei.value)
    with Store(proj / "alias.duckdb"):   # free again once the first writer closed
        pass


def test_cli_second_run_through_a_symlinked_db_is_refused(proj):
    (proj / "link.duckdb").symlink_to(proj / "db.duckdb")
    write(proj / "r.synth", BASE + "step r = rephrase(g, model=m) -> rq\n")
    import os
    import subprocess
    import sys

    # 1.5 s a call: the first run still holds its lock while the second process starts on a loaded machine
    env = {**os.environ, "PYTHONPATH": str(REPO), "SYNTH_FAKE_DELAY": "1.5"}
    first = subprocess.Popen([sys.executable, "-m", "synthlang.cli.main", "run", "r.synth", "--db", "db.duckdb", "--quiet"],
                             cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (proj / "db.duckdb.lock").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        r = synth("run", "r.synth", "--db", "link.duckdb", "--quiet", cwd=proj, env={"SYNTH_FAKE_DELAY": "0.5"})
        assert r.returncode != 0 and "another synthlang process" in r.stderr and "Traceback" not in r.stderr, r.stderr
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert _count(proj, "calls") == 4


# ------------------------------------------------------------ item 4: template denial of service
DOS = [
    ("{{ range(10**9)|length }}", "range() of 1,000,000,000 items"),
    ("{{ 'x' * 10**9 }}", "'*' would build 1,000,000,000"),
    ("{{ 'x'|center(10**9) }}", "filter 'center'"),
    ("{{ '%0*d' % (10**9, 1) }}", "'%' format"),
    ("{{ 'x'.ljust(10**9) }}", "str.ljust()"),
    ("{{ '{:>1000000000}'.format('x') }}", "str.format()"),
    ("{{ [1] * 10**8 }}", "'*' would build"),
    ("{{ 2 ** 100000 }}", "'**' result"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "longer than 2 s"),
    ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}", "longer than 2 s"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "RecursionError"),
    ("{% for i in range(100000) %}{{ question * 100 }}{% endfor %}", "output over"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("payload,reason", DOS)
def test_template_bombs_fail_their_rows_with_the_reason(proj, payload, reason):
    p = write(proj / "r.synth", BASE + f'step x = generate(g, model=m, field=question, prompt="{payload}")\n')
    t0 = time.monotonic()
    prog = synthlang.check_file(p)   # checking never evaluates the template
    assert time.monotonic() - t0 < 5
    s = synthlang.run(prog, db=proj / "db.duckdb")
    by = {x.name: x for x in s.steps}
    assert s.status == "finished" and by["x"].rows_failed == 4 and by["x"].calls_made == 0
    con = duckdb.connect(str(proj / "db.duckdb"), read_only=True)
    errors = {e for (e,) in con.execute("select error from failures").fetchall()}
    con.close()
    assert len(errors) == 1 and "a sandbox limit was hit" in next(iter(errors)) and reason in next(iter(errors)), errors


@pytest.mark.timeout(120)
def test_cli_check_and_run_of_a_string_bomb_finish_quickly(proj):
    write(proj / "r.synth", BASE + 'step x = generate(g, model=m, field=question, prompt="{{ \'x\' * 10**9 }}")\n'
          'step y = generate(g, model=m, field=question, prompt="{{ range(10**9)|length }}")\n')
    r = synth("check", "r.synth", cwd=proj, timeout=60)
    assert r.returncode == 0, r.stderr
    r = synth("run", "r.synth", "--quiet", cwd=proj, timeout=60)
    assert r.returncode in (0, 2) and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr


def test_bounded_sandbox_still_renders_ordinary_templates():
    from synthlang.templates import render

    text = ("{{ q }} {{ 2**10 }} {% for i in range(3) %}{{ i }}{% endfor %} {{ 'ab'|center(6) }} {{ '%05d' % 3 }} "
            "{{ '{:>4}'.format('z') }} {{ [1, 2] * 2 }} {{ 'ab' * 3 }} {{ 7 // 2 }} {{ 7 / 2 }}")
    assert render(text, {"q": "héllo"}) == "héllo 1024 012   ab   00003    z [1, 2, 1, 2] ababab 3 3.5"


# ------------------------------------------------------------ item 11: null / empty prompt fields
def test_null_or_empty_prompt_field_fails_its_row_naming_the_field(proj):
    rows = [{"question": None, "answer": "1"}, {"question": "", "answer": "2"}, {"question": "  ", "answer": "3"},
            {"question": "What is 2+2?", "answer": "4"}]
    write(proj / "data" / "n.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    p = write(proj / "r.synth", BASE.replace("data/g.jsonl", "data/n.jsonl")
              + 'step a = answer(g, model=m)\nstep b = generate(g, model=m, prompt="Q: {{ question }}")\n')
    s = synthlang.run(synthlang.check_file(p), db=proj / "db.duckdb")
    by = {x.name: x for x in s.steps}
    assert by["a"].rows_failed == 3 and by["a"].calls_made == 1
    assert by["b"].rows_failed == 3 and by["b"].calls_made == 1
    con = duckdb.connect(str(proj / "db.duckdb"), read_only=True)
    got = sorted(con.execute("select step, data->>'answer', error from failures").fetchall())
    con.close()
    assert [(st, a) for st, a, _ in got] == [("a", "1"), ("a", "2"), ("a", "3"), ("b", "1"), ("b", "2"), ("b", "3")]
    errs = {(st, a): e for st, a, e in got}
    assert "field 'input' (the value of the step's field= option) is null in this row" in errs[("a", "1")]
    assert "field 'question' is empty in this row" in errs[("b", "2")]
    assert "blank" in errs[("b", "3")]


def test_optional_fields_under_if_or_default_may_be_empty():
    from synthlang.templates import render

    assert render("Q {% if hint %}hint: {{ hint }}{% endif %}", {"hint": ""}) == "Q"
    assert render("Q {{ hint|default('none', true) }}", {"hint": ""}) == "Q none"


# ------------------------------------------------------------ item 5: train= commands
LOOP = BASE + """loop grow(rounds=3, train="TRAIN") {
  step written = new_question(g.new, model=m, field=question, k=2, min_words=1)
  step solved = answer(written, model=m, field=question) -> answer, gold
  step fresh = dedup(solved, field=question, mode="exact", against=g.all)
  feed g from fresh
}
"""
TOUCH = "touch pwned {data}"


def _loop(proj, cmd, name="r.synth"):
    return write(proj / name, LOOP.replace("TRAIN", cmd))


def test_train_command_is_shown_by_check_and_plan(proj):
    _loop(proj, "touch {out}")
    r = synth("check", "r.synth", cwd=proj, env={"SYNTH_ALLOW_TRAIN": ""})
    assert r.returncode == 0, r.stderr
    assert "loop 'grow' runs an external command between rounds: touch {out}" in r.stdout
    assert "refused unless: synth run ... --allow-train r.synth" in r.stdout
    r = synth("plan", "r.synth", cwd=proj, env={"SYNTH_ALLOW_TRAIN": ""})
    assert r.returncode == 0 and "touch {out}" in r.stdout, r.stderr


@pytest.mark.parametrize("cmd,msg", [
    ("python train.py {nope}", "unknown placeholder {nope}"),
    ("python train.py {", "Single '{' encountered"),
    ("python train.py }", "Single '}' encountered"),
    ("python train.py {}", "unknown placeholder {}"),
    ("python train.py {data.__class__}", "unknown placeholder {data.__class__}"),
    ("python train.py {0}", "unknown placeholder {0}"),
])
def test_bad_train_placeholders_are_positioned_check_errors(proj, cmd, msg):
    _loop(proj, cmd)
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    [e] = ei.value.errors
    assert e.code == "bad-train-command" and msg in e.message and (e.span.line, e.span.col) == (7, 27), e


def test_unallowed_train_command_is_refused_before_any_call(proj):
    _loop(proj, TOUCH)
    for env in ({"SYNTH_ALLOW_TRAIN": ""}, {"SYNTH_ALLOW_TRAIN": "1"}):
        r = synth("run", "r.synth", "--quiet", "--db", "db.duckdb", cwd=proj, env=env)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "were not allowed" in r.stderr and "--allow-train r.synth" in r.stderr
        assert not (proj / "db.duckdb").exists() and not (proj / "pwned").exists()
    assert "SYNTH_ALLOW_TRAIN=1 no longer allows" in r.stderr


def test_allowance_is_for_one_file_and_its_content(proj, monkeypatch):
    from synthlang.errors import ConfigError
    from synthlang.plan.train import allowance

    monkeypatch.delenv("SYNTH_ALLOW_TRAIN", raising=False)
    _loop(proj, TOUCH, "other.synth")
    other = allowance(proj / "other.synth")
    _loop(proj, TOUCH)
    monkeypatch.setenv("SYNTH_ALLOW_TRAIN", other)   # another recipe's allowance does not carry over
    with pytest.raises(ConfigError):
        synthlang.run(synthlang.check_file(proj / "r.synth"), db=proj / "db.duckdb")
    monkeypatch.setenv("SYNTH_ALLOW_TRAIN", allowance(proj / "r.synth"))
    write(proj / "r.synth", LOOP.replace("TRAIN", TOUCH) + "# edited after it was allowed\n")
    with pytest.raises(ConfigError):
        synthlang.run(synthlang.check_file(proj / "r.synth"), db=proj / "db.duckdb")
    assert not (proj / "db.duckdb").exists() and not (proj / "pwned").exists()


def test_allow_train_flag_runs_the_command(proj):
    _loop(proj, TOUCH)
    r = synth("run", "r.synth", "--quiet", "--db", "db.duckdb", "--allow-train", "r.synth", cwd=proj,
              env={"SYNTH_ALLOW_TRAIN": ""})
    assert r.returncode == 0, r.stderr
    assert (proj / "pwned").exists()
    con = duckdb.connect(str(proj / "db.duckdb"), read_only=True)
    assert con.execute("select count(*), min(exit_status) from train_runs").fetchone()[1] == 0
    con.close()


# ------------------------------------------------------------ item 12: ranges and replace
@pytest.mark.parametrize("step,msg,col", [
    ("step a = answer(g, model=m, n=0)", "n must be between 1 and 1024, not 0", 31),
    ("step a = answer(g, model=m, n=-1)", "n must be between 1 and 1024, not -1", 31),
    ("step a = answer(g, model=m, max_tokens=-5)", "max_tokens must be at least 1, not -5", 40),
    ("step a = answer(g, model=m, temperature=-1)", "temperature must be between 0 and 2, not -1", 41),
    ("step a = answer(g, model=m, top_p=1.5)", "top_p must be between 0 and 1, not 1.5", 35),
    ("step a = answer(g, model=m, seed=-3)", "seed must be between 0 and", 34),
])
def test_out_of_range_step_options_are_check_errors(proj, step, msg, col):
    write(proj / "r.synth", BASE + step + "\n")
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    [e] = ei.value.errors
    assert e.code == "out-of-range" and msg in e.message and (e.span.line, e.span.col) == (7, col), e


@pytest.mark.parametrize("model,msg", [
    ("fake(max_tokens=-5)", "max_tokens must be at least 1, not -5"),
    ("fake(temperature=-1)", "temperature must be between 0 and 2, not -1"),
    ("fake(max_tokens=0)", "max_tokens must be at least 1, not 0"),
    ('openai("x", base_url="http://127.0.0.1:9/v1", top_p=-0.1)', "top_p must be between 0 and 1, not -0.1"),
])
def test_out_of_range_model_sampling_is_a_check_error(proj, model, msg):
    write(proj / "r.synth", BASE.replace("fake(temperature=0.5, max_tokens=32)", model))
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    [e] = ei.value.errors
    assert e.code == "out-of-range" and msg in e.message and e.span.line == 2, e


def test_replace_of_a_field_that_does_not_exist_is_a_check_error(proj):
    write(proj / "r.synth", BASE + "step r = rephrase(g, model=m) -> replace nosuch\n")
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    [e] = ei.value.errors
    assert e.code == "replace-unknown-field" and "no field 'nosuch' to replace" in e.message and e.span.line == 7
    write(proj / "r.synth", BASE + "step r = rephrase(g, model=m) -> replace question\n")
    assert synthlang.check_file(proj / "r.synth").steps[0].rename == {"rephrased": "question"}


# ------------------------------------------------------------ item 13: string escapes and LaTeX
LATEX = r"Solve $\frac{a}{b} + \sqrt{c}$ and put the result in \boxed{x}; use \left( \right) and \times, \beta, \nu."


def test_latex_in_a_one_line_string_is_a_positioned_error_not_a_form_feed(proj):
    write(proj / "r.synth", BASE + 'step x = generate(g, model=m, prompt="Q: {{ question }} \\frac{a}{b} \\boxed{x}")\n')
    r = synth("check", "r.synth", cwd=proj)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "r.synth:7:57: error: unknown escape \\f in a string" in r.stderr, r.stderr
    assert 'triple-quoted string """..."""' in r.stderr


def test_latex_in_a_triple_quoted_template_reaches_the_model_byte_exact(proj):
    p = write(proj / "r.synth", BASE + 'template t = """\n  {{ question }}\n  ' + LATEX + '\n  """\n'
              "step x = generate(g, model=m, prompt=t)\n")
    prog = synthlang.check_file(p)
    assert prog.templates["t"] == "{{ question }}\n" + LATEX + "\n"
    synthlang.run(prog, db=proj / "db.duckdb")
    con = duckdb.connect(str(proj / "db.duckdb"), read_only=True)
    sent = [json.loads(m)[-1]["content"] for (m,) in con.execute("select messages from calls").fetchall()]
    con.close()
    assert len(sent) == 4 and all(s.endswith(LATEX) for s in sent)
    assert not any(c in "".join(sent) for c in "\f\b\v\a\r")


@pytest.mark.parametrize("literal,value", [
    (r'"a\"b"', 'a"b'), (r'"a\\b"', "a\\b"), (r'"a\nb"', "a\nb"), (r'"a\tb"', "a\tb"), (r'"\u00e9"', "é"),
    (r'"\u{1F600}"', "\U0001F600"), (r'"\\frac{a}{b}"', r"\frac{a}{b}"),
    ('"""\n  \\frac{1}{2} \\n \\u00e9 \\"\n  """', '\\frac{1}{2} \\n \\u00e9 \\"\n'),
])
def test_the_language_string_escapes(literal, value):
    from synthlang.syntax import parse

    assert parse(f"template t = {literal}").decls[0].text == value


@pytest.mark.parametrize("literal,col,msg", [
    (r'"\frac"', 15, r"unknown escape \f"), (r'"x \boxed{1}"', 17, r"unknown escape \b"),
    (r'"\x41"', 15, r"unknown escape \x"), (r'"\r"', 15, r"unknown escape \r"), (r'"\N{BULLET}"', 15, r"unknown escape \N"),
    (r'"\101"', 15, r"unknown escape \1"), (r'"\u12"', 15, "malformed \\u escape"), (r'"\ud800"', 15, "malformed \\u escape"),
    (r'"\u{110000}"', 15, "malformed \\u escape"), (r'"a \ "', 17, r"unknown escape \ "),
])
def test_unknown_escapes_are_positioned_errors(literal, col, msg):
    from synthlang.errors import SynthSyntaxError
    from synthlang.syntax import parse

    with pytest.raises(SynthSyntaxError) as ei:
        parse(f"template t = {literal}", "r.synth")
    e = ei.value
    assert e.code == "bad-escape" and msg in e.message and (e.span.line, e.span.col) == (1, col), e


def test_fmt_writes_only_the_language_escapes():
    from synthlang.syntax import parse
    from synthlang.syntax.format import quote

    for s in ["a\rb", "\x00\x1f", "tab\there", "line\nbreak", "\U0001F600 \u200b", "a\\b\"c", LATEX,
              "two\nlines\nof " + LATEX, 'ends with "', "x\n\"\"\"\ny"]:
        lit = quote(s)
        assert parse(f"template t = {lit}").decls[0].text == s, lit


# ------------------------------------------------------------ item 16: an imported loop used as a step
LIB_LOOP = """model m = fake()
source seeds = jsonl("../data/g.jsonl") {
  question: str
  answer: str
}
step before = rephrase(seeds, model=m) -> rq
loop grow(rounds=3) {
  step written = new_question(seeds.new, model=m, field=question, k=2, min_words=1)
  step solved = answer(written, model=m, field=question) -> answer, gold
  feed seeds from solved
}
step after = rephrase(seeds, model=m) -> rq
"""


@pytest.mark.parametrize("member,loop", [("solved", "grow"), ("written", "grow"), ("after", "grow"),
                                         ("grow", "grow")])
def test_an_imported_loop_used_as_a_step_is_a_check_error(proj, member, loop):
    write(proj / "lib" / "l.synth", LIB_LOOP)
    write(proj / "r.synth", f'use "lib/l.synth" as lib\nstep x = rephrase(lib.{member}, model=lib.m) -> rq2\n')
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    errs = [e for e in ei.value.errors if e.code == "imported-loop"]
    assert errs and errs[0].data["loop"] == loop and errs[0].span.line == 2, ei.value.errors
    assert "imported loops do not run" in errs[0].message


def test_steps_of_an_imported_recipe_outside_its_loops_still_import(proj):
    write(proj / "lib" / "l.synth", LIB_LOOP)
    write(proj / "r.synth", 'use "lib/l.synth" as lib\nstep x = rephrase(lib.before, model=lib.m, field=rq) -> rq2\n')
    prog = synthlang.check_file(proj / "r.synth")
    assert [s.name for s in prog.steps] == ["lib.before", "x"]


# ------------------------------------------------------------ item 14: prompts over the context window
CTX = """recipe c "context"
model small = embedded(n_ctx=512, max_tokens=64)
model api = openai("gpt-x", base_url="http://127.0.0.1:9/v1", context=1024, max_tokens=100)
model big = vllm("org/model", max_model_len=100000)
model unknown = openai("gpt-y", base_url="http://127.0.0.1:9/v1")
source g = jsonl("data/long.jsonl") {
  question: str
}
step a = rephrase(g, model=small)
step b = rephrase(g, model=api)
step c = rephrase(g, model=big)
step d = rephrase(g, model=unknown)
"""


def test_plan_flags_rows_over_a_models_declared_context_before_any_call(proj):
    qs = [json.loads(GSM[0])["question"], "word " * 500, json.loads(GSM[1])["question"], "x" * 6000]
    write(proj / "data" / "long.jsonl", "\n".join(json.dumps({"question": q}) for q in qs) + "\n")
    p = write(proj / "r.synth", CTX)
    plan = synthlang.plan(synthlang.check_file(p))
    got = {f["step"]: f for f in plan["over_context"]}
    assert set(got) == {"a", "b"}                      # c has room; d declares no context
    assert (got["a"]["over"], got["a"]["first"], got["a"]["context"], got["a"]["rows"]) == (2, 2, 512, 4)
    assert (got["b"]["over"], got["b"]["first"], got["b"]["context"]) == (1, 4, 1024)
    assert got["b"]["largest"] >= 1500
    r = synth("plan", "r.synth", cwd=proj)
    assert r.returncode == 0, r.stderr
    assert "warning: step 'a': 2 of 4 rows need more than model 'small''s context of 512 tokens" in r.stdout
    assert not (proj / ".synth").exists()               # no call, no store
