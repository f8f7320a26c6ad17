"""A recipe from someone else cannot harm the user: sandboxed templates, literal data, confined paths,
no Python, no secrets in the store, read-only queries.

The engine is the deterministic fake (what is under test is rendering, checking and the store).
"""

from __future__ import annotations

import json

import duckdb
import pytest
from conftest import synth, write

import synthlang
from synthlang.errors import Diagnostics

BASE = """
recipe u "untrusted"
model m = fake(temperature=0.5, max_tokens=32)
source seeds = jsonl("data/s.jsonl") {
  question: str
}
"""


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "proj"
    write(root / "data" / "s.jsonl", "\n".join(json.dumps({"question": q}) for q in [
        "{{ 7*7 }}", "{% for i in range(3) %}x{% endfor %}", "{{ question }} and {{ config }}", "plain 2 + 2"]) + "\n")
    return root


def _run(root, body, factory=None):
    from synthlang.engines.fake import FakeEngine

    eng = FakeEngine()
    p = write(root / "r.synth", BASE + body)
    prog = synthlang.check_file(p)
    return synthlang.run(prog, db=root / "db.duckdb", engine_factory=factory or (lambda m: eng))


def _sql(root, q):
    con = duckdb.connect(str(root / "db.duckdb"), read_only=True)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------- templates
ESCAPES = [
    "{{ question.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__['os'].system('echo pwned') }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ question|attr('__class__') }}",
    "{{ question['__class__'] }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ question.format.__globals__ }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_template_injection_is_a_check_error(proj, payload):
    write(proj / "r.synth", BASE + f'step g = generate(seeds, model=m, prompt="{payload}")\n')
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    codes = {e.code for e in ei.value.errors}
    assert codes <= {"template-unsafe", "template-variable"} and "template-unsafe" in codes, ei.value.errors
    e = next(e for e in ei.value.errors if e.code == "template-unsafe")
    assert e.span.line == 7 and "sandbox refuses attribute" in e.message
    assert not (proj / "pwned").exists()


@pytest.mark.parametrize("payload", ESCAPES[:5])
def test_template_injection_is_still_refused_at_render_time(payload):
    """The run-time sandbox stays the last line: a template that skipped the checker still cannot escape."""
    from synthlang.templates import TemplateError, compile_template

    tpl = compile_template(payload, "t")   # compiles: the refusal is at render time
    assert tpl is not None
    from synthlang.templates import render

    with pytest.raises(TemplateError) as ei:
        render(payload, {"question": "q"}, "t")
    assert ei.value.code in ("template-unsafe", "template-syntax")
    assert "unsafe" in str(ei.value) or "undefined" in str(ei.value) or "has no attribute" in str(ei.value)


def test_unknown_names_like_os_are_check_errors(proj):
    write(proj / "r.synth", BASE + 'step g = generate(seeds, model=m, prompt="{{ os.system(\'id\') }}")\n')
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    assert [e.code for e in ei.value.errors] == ["template-variable"]
    assert ei.value.errors[0].data["name"] == "os"


def test_values_from_data_are_never_rendered_again(proj):
    _run(proj, 'step g = generate(seeds, model=m, prompt="Say: {{ question }}")\nexport g to "out/g.jsonl" as jsonl\n')
    sent = sorted(json.loads(m)[-1]["content"] for (m,) in _sql(proj, "select messages from calls"))
    assert sent == sorted(["Say: {{ 7*7 }}", "Say: {% for i in range(3) %}x{% endfor %}",
                           "Say: {{ question }} and {{ config }}", "Say: plain 2 + 2"])
    out = [json.loads(x)["question"] for x in (proj / "out" / "g.jsonl").read_text(encoding="utf-8").splitlines()]
    assert "{{ 7*7 }}" in out and "49" not in "".join(out)


# ---------------------------------------------------------- no Python in recipes
@pytest.mark.parametrize("expr", ['__import__("os")', 'eval("1")', 'open("/etc/passwd")', 'exec("x = 1")'])
def test_expressions_cannot_call_python(proj, expr):
    write(proj / "r.synth", BASE.replace("  question: str\n", f"  question: str\n  x = {expr}\n"))
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    assert [e.code for e in ei.value.errors] == ["unknown-function"]


def test_attribute_access_in_expressions_never_reaches_python_objects(proj):
    body = "export seeds to \"out/s.jsonl\" as jsonl\n"
    write(proj / "r.synth", BASE.replace("  question: str\n", "  question: str\n  x = question.__class__\n") + body)
    prog = synthlang.check_file(proj / "r.synth")
    synthlang.run(prog, db=proj / "db.duckdb")
    rows = [json.loads(x) for x in (proj / "out" / "s.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 and all(r["x"] is None for r in rows)


# ------------------------------------------------------------------- paths
@pytest.mark.parametrize("decl,what", [
    ('source other = jsonl("../secret.jsonl") {\n  question: str\n}\n', "source"),
    ('source other = jsonl("/etc/passwd") {\n  question: str\n}\n', "source"),
    ('template t = file("../secret.j2")\n', "template"),
    ('export seeds to "../stolen.jsonl" as jsonl\n', "export"),
    ('source other = jsonl("link/secret.jsonl") {\n  question: str\n}\n', "source"),
])
def test_paths_may_not_leave_the_project(proj, decl, what):
    write(proj.parent / "secret.jsonl", '{"question": "private"}\n')
    write(proj.parent / "secret.j2", "private")
    (proj / "link").symlink_to(proj.parent)       # a symlink inside the project pointing out of it
    write(proj / "r.synth", BASE + decl)
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(proj / "r.synth")
    e = ei.value.errors[0]
    assert e.code == "outside-project" and e.data["root"] == str(proj.resolve())
    assert f"{what} path" in e.message and "--allow-outside" in (e.hint or "")
    synthlang.check_file(proj / "r.synth", allow_outside=True)   # explicitly trusted: fine


def test_cli_refuses_outside_paths_without_traceback_and_allow_outside_runs(proj):
    write(proj.parent / "secret.jsonl", '{"question": "private 7"}\n')
    write(proj / "r.synth", BASE.replace("data/s.jsonl", "../secret.jsonl")
          + 'step g = generate(seeds, model=m)\nexport g to "out/g.jsonl" as jsonl\n')
    r = synth("run", "r.synth", "--quiet", cwd=proj)
    assert r.returncode == 1 and "outside the project directory" in r.stderr and "Traceback" not in r.stderr
    assert not (proj / ".synth").exists()
    r = synth("run", "r.synth", "--quiet", "--allow-outside", cwd=proj)
    assert r.returncode == 0, r.stderr


def test_project_directory_is_the_git_root(tmp_path):
    from synthlang.check.checker import project_root

    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "recipes" / "sub").mkdir(parents=True)
    assert project_root(tmp_path / "repo" / "recipes" / "sub") == (tmp_path / "repo").resolve()
    (tmp_path / "loose").mkdir()
    assert project_root(tmp_path / "loose") == (tmp_path / "loose").resolve()


# ------------------------------------------------------------------ secrets
def test_api_key_in_a_recipe_is_refused_and_never_stored(proj):
    secret = "sk-test-DO-NOT-STORE-31337"
    write(proj / "r.synth", BASE.replace("fake(temperature=0.5, max_tokens=32)",
                                         f'openai("gpt-x", base_url="http://127.0.0.1:9/v1", api_key="{secret}")')
          + "step g = generate(seeds, model=m)\n")
    r = synth("run", "r.synth", "--quiet", cwd=proj)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "api_key" in r.stderr
    for f in (proj / ".synth").glob("*"):
        assert secret.encode() not in f.read_bytes(), f


# ------------------------------------------------------------- read-only query
@pytest.mark.parametrize("sql", ["delete from rows", "drop table calls", "create table x (a int)",
                                 "update runs set status='x'", "insert into meta values ('a', 'b')",
                                 "attach '/tmp/x.duckdb' as x", "copy rows to '/tmp/synth-leak.csv'"])
def test_query_refuses_writes_and_ddl(proj, sql):
    _run(proj, "step g = generate(seeds, model=m)\n")
    before = _sql(proj, "select count(*) from rows")
    r = synth("query", sql, "--db", "db.duckdb", cwd=proj)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "read-only" in r.stderr, r.stderr
    assert _sql(proj, "select count(*) from rows") == before
