"""Issue 11 corpus: every bad input and security case through the real ``synth`` CLI, classified.

Each case is a tiny project in a fresh temp folder (no ``.git`` above it) whose ``data/g.jsonl``
holds the first 4 lines of the shipped GSM8K train file. The case runs ``synth check`` / ``plan`` /
``run`` / ``query`` in a subprocess with a 60 s limit and its outcome is classified:

* ``positioned`` — exit 1 and the message names ``file:line:col``, or a data row (``row N``);
* ``row-failure`` — the run finished and the bad rows are stored as failed with their reason
  (the intended outcome for per-row problems: template limits, null prompt fields);
* ``clear`` — exit 1 (or a documented exit status) with a message and no traceback;
* ``traceback`` — exit 3 or a Python traceback;
* ``hang`` — still running after 60 s;
* ``silent`` — exit 0 and nothing refused or failed.

Security cases also record whether the attack was *blocked* (nothing read, written, run or leaked).
Writes ``bench/results/bad_inputs.json``. Run: ``.venv/bin/python bench/bad_inputs.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GSM = "\n".join((REPO / "recipes/data/gsm8k/train_first1000.jsonl").read_text(encoding="utf-8").splitlines()[:4]) + "\n"
HEAD = """recipe b "bad input"
model m = fake(temperature=0.5, max_tokens=32)
source g = jsonl("data/g.jsonl") {
  question: str
  answer: str
}
"""
PRIME = HEAD + "step r = rephrase(g, model=m) -> rq\n"


def step(s: str) -> dict[str, str]:
    return {"r.synth": HEAD + s + "\n"}


def sql_case(q: str) -> dict[str, str]:
    return {"r.synth": HEAD + f'source e = sql("{q}") {{\n  question: str\n}}\nstep x = rephrase(e, model=m) -> rq\n'}


LOOP = HEAD + """loop grow(rounds=2, train="CMD") {
  step w = new_question(g, model=m, field=question, k=2, min_words=1)
  step s = answer(w, model=m, field=question) -> answer, gold
  feed g from s
}
"""

# (name, files, argv, security?) ; argv[0] is the verb; "PRIME" in files runs a first recipe before
CASES: list[tuple[str, dict[str, str], list[str], bool]] = []


def case(name: str, files: dict[str, str], argv: list[str] | None = None, security: bool = False) -> None:
    CASES.append((name, files, argv or ["run", "r.synth", "--quiet", "--db", "db.duckdb"], security))


# item 1: sql sources
for q in ["DELETE FROM calls; DELETE FROM rows; SELECT 'q' AS question", "DROP TABLE lineage; SELECT 'q' AS question",
          "COPY rows TO '/tmp/synth-bad-input-leak.csv'", "ATTACH '/tmp/synth-bad-input.duckdb' AS x", "INSTALL httpfs",
          "UPDATE runs SET status = 'x'", "CREATE TABLE t AS SELECT 1 AS question", "PRAGMA database_list",
          "SET enable_external_access = true", "SELECT content AS question FROM read_text('../secret.txt')",
          "SELECT column0 AS question FROM read_csv('/etc/passwd', header=false)",
          "SELECT * FROM read_json_auto('/etc/hostname')"]:
    case(f"sql: {q[:48]}", {"PRIME": PRIME, **sql_case(q)}, security=True)
# item 4: templates
for p in ["{{ question.__class__.__mro__[1].__subclasses__() }}", "{{ lipsum.__globals__['os'].system('id') }}",
          "{{ cycler.__init__.__globals__.os.popen('id').read() }}", "{{ namespace.__init__.__globals__ }}",
          "{{ question|attr('__class__') }}", "{{ question['__class__'] }}", "{{ joiner.__init__.__globals__ }}",
          "{{ self._TemplateReference__context }}", "{{ question.format.__globals__ }}",
          "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}"]:
    case(f"template escape: {p[:40]}", step(f'step x = generate(g, model=m, field=question, prompt="{p}")'), security=True)
for p in ["{{ range(10**9)|length }}", "{{ 'x' * 10**9 }}", "{{ 'x'|center(10**9) }}", "{{ '%0*d' % (10**9, 1) }}",
          "{{ 'x'.ljust(10**9) }}", "{{ '{:>1000000000}'.format('x') }}", "{{ [1] * 10**8 }}", "{{ 2 ** 100000 }}",
          "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
          "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
          "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
          "{% for i in range(100000) %}{{ question * 100 }}{% endfor %}"]:
    case(f"template bomb: {p[:40]}", step(f'step x = generate(g, model=m, field=question, prompt="{p}")'), security=True)
    case(f"template bomb (check): {p[:32]}", step(f'step x = generate(g, model=m, field=question, prompt="{p}")'),
         ["check", "r.synth"], security=True)
# item 5: train
for cmd, env in [("touch pwned {data}", ""), ("touch pwned {data}", "1")]:
    case(f"train not allowed (SYNTH_ALLOW_TRAIN={env!r})", {"r.synth": LOOP.replace("CMD", cmd), "ENV": env}, security=True)
for cmd in ["touch {nope}", "touch {", "touch {0}", "touch {data.__class__}"]:
    case(f"train placeholder: {cmd}", {"r.synth": LOOP.replace("CMD", cmd)}, ["check", "r.synth"])
# item 3: symlinked --db (second writer) — run in-process below
# query writes (kept from before)
for q in ["delete from rows", "drop table calls", "attach '/tmp/x.duckdb' as x", "copy rows to '/tmp/synth-leak.csv'",
          "select * from read_text('/etc/passwd')"]:
    case(f"query: {q}", {"PRIME": PRIME}, ["query", q, "--db", "db.duckdb"], security=True)
# item 8, 10, 16: data
case("jsonl lone surrogate", {"data/g.jsonl": GSM + '{"question": "\\ud800", "answer": "1"}\n', "r.synth": PRIME})
case("jsonl lone low surrogate in a list", {"data/g.jsonl": GSM + '{"question": "q", "answer": ["\\udfff"]}\n',
                                            "r.synth": PRIME.replace("answer: str", "answer: any")})
CSV = HEAD.replace('jsonl("data/g.jsonl")', 'csv("data/g.csv")') + "step r = rephrase(g, model=m) -> rq\n"
case("csv short row", {"data/g.csv": "question,answer\nq1,a1\nq2\n", "r.synth": CSV})
case("csv unclosed quote", {"data/g.csv": 'question,answer\nq1,a1\n"q2,a2\nq3,a3\n', "r.synth": CSV})
case("csv duplicate header", {"data/g.csv": "question,answer,question\nq1,a1,b\n", "r.synth": CSV})
case("csv long row", {"data/g.csv": "question,answer\nq1,a1,extra\n", "r.synth": CSV})
# item 11
case("null prompt field", {"data/g.jsonl": '{"question": null, "answer": "1"}\n', "r.synth": PRIME})
case("empty prompt field", {"data/g.jsonl": '{"question": "", "answer": "1"}\n', "r.synth": PRIME})
case("blank prompt field", {"data/g.jsonl": '{"question": "   ", "answer": "1"}\n', "r.synth": PRIME})
# item 12
for s in ["step a = answer(g, model=m, n=0)", "step a = answer(g, model=m, n=-1)",
          "step a = answer(g, model=m, max_tokens=-5)", "step a = answer(g, model=m, temperature=-1)",
          "step a = answer(g, model=m, top_p=2)", "step r = rephrase(g, model=m) -> replace nosuch"]:
    case(f"option: {s[9:]}", step(s), ["check", "r.synth"])
case("model max_tokens=-5", {"r.synth": HEAD.replace("max_tokens=32", "max_tokens=-5")}, ["check", "r.synth"])
case("model temperature=-1", {"r.synth": HEAD.replace("temperature=0.5", "temperature=-1")}, ["check", "r.synth"])
# item 13
for lit in [r'"\frac{a}{b} and \boxed{x}"', r'"\x41"', r'"\N{BULLET}"', r'"\101"', r'"\u12"', r'"\ud800"', r'"\r"']:
    case(f"escape: {lit}", {"r.synth": HEAD + f"template t = {lit}\n"}, ["check", "r.synth"])
# item 14
case("prompt over embedded n_ctx (plan)", {"data/g.jsonl": json.dumps({"question": "word " * 3000, "answer": "1"}) + "\n",
                                           "r.synth": HEAD.replace("fake(temperature=0.5, max_tokens=32)", "embedded(n_ctx=512)")
                                           + "step r = rephrase(g, model=m) -> rq\n"}, ["plan", "r.synth"])
# item 16
case("jsonl with BOM (must be accepted)", {"data/g.jsonl": "\ufeff" + GSM, "r.synth": PRIME})
case("imported loop used as a step", {"lib/l.synth": LOOP.replace(', train="CMD"', "").replace("data/g.jsonl", "../data/g.jsonl"),
                                      "r.synth": 'use "lib/l.synth" as lib\nstep x = rephrase(lib.s, model=lib.m) -> rq2\n'},
     ["check", "r.synth"])
# a few more of our own
case("jsonl NUL-heavy garbage line", {"data/g.jsonl": GSM + "\x00\x00\x00\n", "r.synth": PRIME})
case("jsonl nested 100000 deep", {"data/g.jsonl": "[" * 100000 + "]" * 100000 + "\n", "r.synth": PRIME})
case("recipe with a lone surrogate escape in a string", {"r.synth": HEAD + 'template t = "\\udc00"\n'}, ["check", "r.synth"])
case("recipe 200000 nested parens (valid)", {"r.synth": HEAD + "param p: int = " + "(" * 200000 + "1" + ")" * 200000 + "\n"},
     ["check", "r.synth"])
case("sql source empty string", {"r.synth": HEAD + 'source e = sql("") {\n  question: str\n}\n'}, ["check", "r.synth"])
case("sql source comment only", {"r.synth": HEAD + 'source e = sql("-- nothing") {\n  question: str\n}\n'}, ["check", "r.synth"])

# Valid inputs that must be accepted: a BOM, deep but valid nesting, and `synth check` of a template
# bomb (checking never evaluates a template, so it must finish fast; the run fails the rows).
EXPECT_OK = {"jsonl with BOM (must be accepted)", "recipe 200000 nested parens (valid)"} | \
    {c[0] for c in CASES if c[0].startswith("template bomb (check)")}
POSITIONED = re.compile(r":\d+:\d+: error|\brow \d+|line \d+")


def run_case(name: str, files: dict[str, str], argv: list[str], security: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="synth-bad-")) / "proj"
    (root / "data").mkdir(parents=True)
    (root.parent / "secret.txt").write_text("TOP-SECRET-42", encoding="utf-8")
    (root / "data" / "g.jsonl").write_text(GSM, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "SYNTH_ALLOW_TRAIN": files.get("ENV", "")}
    cli = [sys.executable, "-m", "synthlang.cli.main"]
    if "PRIME" in files:
        (root / "first.synth").write_text(files["PRIME"], encoding="utf-8")
        subprocess.run([*cli, "run", "first.synth", "--quiet", "--db", "db.duckdb"], cwd=root, env=env,
                       capture_output=True, timeout=120, check=True)
    for rel, text in files.items():
        if rel in ("PRIME", "ENV"):
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8", errors="surrogatepass")
    before = _counts(root)
    t0 = time.monotonic()
    try:
        r = subprocess.run([*cli, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return {"case": name, "security": security, "outcome": "hang", "seconds": 60.0, "blocked": False}
    secs = time.monotonic() - t0
    failed = _failed(root)
    out = r.stdout + r.stderr
    if r.returncode == 3 or "Traceback" in out:
        outcome = "traceback"
    elif r.returncode == 0 and name in EXPECT_OK:
        outcome = "accepted (correct)"
    elif r.returncode == 0 and failed:
        outcome = "row-failure"
    elif r.returncode == 0 and argv[0] == "plan" and "warning:" in out:
        outcome = "positioned" if POSITIONED.search(out) else "clear"
    elif r.returncode == 0:
        outcome = "silent"
    else:
        outcome = "positioned" if POSITIONED.search(out) else "clear"
    leaked = ("TOP-SECRET" in out or (root / "pwned").exists() or Path("/tmp/synth-bad-input-leak.csv").exists()
              or Path("/tmp/synth-bad-input.duckdb").exists() or _secret_in_db(root))
    after = _counts(root)
    blocked = outcome not in ("silent", "traceback", "hang") and not leaked and (before is None or after == before
                                                                                   or argv[0] != "query")
    if outcome == "accepted (correct)" and argv[0] == "check":
        blocked = secs < 10   # a bomb must not make `synth check` slow
    if before is not None and after is not None and after[:2] < before[:2]:
        blocked = False   # calls or rows were deleted
    return {"case": name, "security": security, "outcome": outcome, "exit": r.returncode, "seconds": round(secs, 2),
            "blocked": blocked if security else None, "message": out.strip().splitlines()[0][:160] if out.strip() else ""}


def _db(root: Path) -> Any:
    import duckdb

    p = root / "db.duckdb"
    return duckdb.connect(str(p), read_only=True) if p.exists() else None


def _counts(root: Path) -> tuple[int, int, int] | None:
    con = _db(root)
    if con is None:
        return None
    try:
        return tuple(con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("calls", "rows", "lineage"))  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - a dropped table reads as "changed"
        return (-1, -1, -1)
    finally:
        con.close()


def _failed(root: Path) -> int:
    con = _db(root)
    if con is None:
        return 0
    try:
        return int(con.execute("select count(*) from failures where error is not null").fetchone()[0])
    except Exception:  # noqa: BLE001
        return 0
    finally:
        con.close()


def _secret_in_db(root: Path) -> bool:
    p = root / "db.duckdb"
    return p.exists() and b"TOP-SECRET" in p.read_bytes()


def main() -> None:
    results = [run_case(*c) for c in CASES]
    for r in results:
        print(f"{r['outcome']:<20} {'blocked' if r['blocked'] else '' if r['blocked'] is None else 'NOT BLOCKED':<12} "
              f"{r['seconds']:>6.2f}s  {r['case']}")
    tally: dict[str, int] = {}
    for r in results:
        tally[r["outcome"]] = tally.get(r["outcome"], 0) + 1
    sec = [r for r in results if r["security"]]
    summary = {"cases": len(results), "outcomes": tally, "security_cases": len(sec),
               "security_blocked": sum(1 for r in sec if r["blocked"]), "results": results}
    out = REPO / "bench" / "results" / "bad_inputs.json"
    out.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=1))


if __name__ == "__main__":
    main()
