"""From store to training (issue 13): training formats, lineage-safe splits, the dataset card, one export path
for the recipe and ``synth export``, ``synth runs``/``show``, and the small CLI fixes.

These runs use the fake engine: they test the shape of the data and the funnel, not that any engine works.
The rows are real GSM8K train rows shipped in recipes/data; the store is a real DuckDB file; exports are read
back with the real ``datasets`` library.
"""

from __future__ import annotations

import json
import re

import datasets
import duckdb
import pytest
from conftest import synth, write

import synthlang
from synthlang.errors import Diagnostics

pytestmark = pytest.mark.timeout(300)

BASE = """
recipe t "Rephrase, answer with n=3, verify, judge"
param limit: int = 8
model m = fake(temperature=0.5, max_tokens=32)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=limit) {
  question: str
  answer: str
  gold = final_number(answer)
}
step r = rephrase(seeds, model=m) -> rq
step a = answer(r, model=m, field=rq, n=3)
step v = verify(a, field=final_answer, gold=gold)
step j = judge(v, model=m, field=rq, response=reasoning, rubric="correctness")
"""

EXPORTS = """
export v to "out/v.jsonl" as jsonl
export v to "out/plain" as hf (fields=[question, rq, reasoning, verified])
export v to "out/chat" as chat (messages=[system("Solve step by step."), user(rq), assistant(reasoning)])
export v to "out/sharegpt" as sharegpt (user=rq, assistant=reasoning)
export v to "out/alpaca" as alpaca (instruction=rq, output=reasoning)
export j to "out/dpo" as preference (prompt=rq, completion=reasoning, rank_by=score)
export v to "out/kto" as kto (prompt=rq, completion=reasoning, label=verified)
template ask_back = "Write the question whose answer is {{ final_answer }}."
export v to "out/views" as views (views=[forward(user=rq, assistant=reasoning), backward(user=ask_back, assistant=rq)])
export v to "out/split" as chat (user=rq, assistant=reasoning, split="train=0.75,test=0.25", seed=3)
"""


@pytest.fixture
def ran(project):
    path = write(project / "r.synth", BASE + EXPORTS)
    summary = synthlang.run(synthlang.check_file(path), db=project / "db.duckdb")
    assert summary.status == "finished"
    return project, summary


def _con(project):
    return duckdb.connect(str(project / "db.duckdb"), read_only=True)


def test_each_format_loads_with_datasets_in_trl_shape(ran):
    project, _ = ran
    out = project / "out"
    n_v = len((out / "v.jsonl").read_text(encoding="utf-8").splitlines())
    assert n_v == 8 * 3
    plain = datasets.load_from_disk(str(out / "plain"))
    assert plain.column_names == ["row_id", "question", "rq", "reasoning", "verified"]
    assert plain.features["verified"] == datasets.Value("bool")       # declared from the step's field types
    assert plain.features["question"] == datasets.Value("string")
    chat = datasets.load_from_disk(str(out / "chat"))
    assert len(chat) == n_v and chat.column_names == ["messages"]
    m = chat[0]["messages"]
    assert [x["role"] for x in m] == ["system", "user", "assistant"] and m[0]["content"] == "Solve step by step."
    rows = [json.loads(x) for x in (out / "v.jsonl").read_text(encoding="utf-8").splitlines()]
    assert m[1]["content"] == rows[0]["rq"] and m[2]["content"] == rows[0]["reasoning"]
    sg = datasets.load_from_disk(str(out / "sharegpt"))
    assert [t["from"] for t in sg[0]["conversations"]] == ["human", "gpt"]
    al = datasets.load_from_disk(str(out / "alpaca"))
    assert al.column_names == ["instruction", "input", "output"] and al[0]["output"] == rows[0]["reasoning"]
    kto = datasets.load_from_disk(str(out / "kto"))
    assert kto.features["label"] == datasets.Value("bool")
    assert [x["label"] for x in kto] == [r["verified"] for r in rows]
    views = datasets.load_from_disk(str(out / "views"))
    assert len(views) == 2 * n_v and views[0]["view"] == "forward" and views[1]["view"] == "backward"
    assert views[1]["messages"][0]["content"] == f"Write the question whose answer is {rows[0]['final_answer']}."


def test_preference_pairs_rank_samples_of_one_parent(ran):
    project, _ = ran
    dpo = datasets.load_from_disk(str(project / "out" / "dpo"))
    assert dpo.column_names == ["prompt", "chosen", "rejected"]
    # recompute the expected pairs from the store: samples of one rephrased row, ranked by the judge's score
    con = _con(project)
    got = con.execute("""
        SELECT ar.parent_id, j.data->>'reasoning', CAST(j.data->>'score' AS DOUBLE), a.sample_index
        FROM rows j JOIN lineage jv ON jv.child_id = j.row_id JOIN lineage va ON va.child_id = jv.parent_id
        JOIN rows a ON a.row_id = va.parent_id JOIN lineage ar ON ar.child_id = a.row_id
        WHERE j.step = 'j' AND j.status = 'ok'""").fetchall()
    groups: dict[str, list] = {}
    for parent, reasoning, score, idx in got:
        groups.setdefault(parent, []).append((idx, score, reasoning))
    want = set()
    for members in groups.values():
        members.sort()
        best = max(members, key=lambda t: t[1])
        worst = min(members, key=lambda t: t[1])
        if best[1] != worst[1]:
            want.add((best[2], worst[2]))
    assert want, "the fake judge's scores must differ within some group for this test to mean anything"
    assert {(x["chosen"], x["rejected"]) for x in dpo} == want


def _seed_of(con, row_id):
    while True:
        p = con.execute("SELECT min(parent_id) FROM lineage WHERE child_id = ?", [row_id]).fetchone()[0]
        if p is None:
            return row_id
        row_id = p


def test_split_keeps_each_seed_ancestor_in_one_split(project):
    # n=3 samples after a rephrase chain: 3 rows per seed that a row-level split would scatter
    path = write(project / "r.synth", BASE + 'export v to "out/split" as hf (split="train=0.5,test=0.5")\n')
    synthlang.run(synthlang.check_file(path), db=project / "db.duckdb")
    dd = datasets.load_from_disk(str(project / "out" / "split"))
    assert isinstance(dd, datasets.DatasetDict) and set(dd) == {"train", "test"}
    con = _con(project)
    seeds = {name: {_seed_of(con, rid) for rid in dd[name]["row_id"]} for name in dd}
    assert seeds["train"] and seeds["test"] and not seeds["train"] & seeds["test"]
    assert len(dd["train"]) + len(dd["test"]) == 24
    assert len(seeds["train"]) == len(seeds["test"]) == 4
    card = (project / "out" / "split" / "README.md").read_text(encoding="utf-8")
    assert "`train`: 12 examples from 4 seed groups" in card and "`test`: 12 examples from 4 seed groups" in card


def test_split_with_stratify_from_the_cli(ran):
    project, _ = ran
    r = synth("export", "v", "--format", "chat", "--split", "train=0.5,test=0.5", "--stratify", "verified", "--to",
              "out/strat", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0, r.stderr
    assert re.search(r"split train: \d+ examples from \d+ seed groups", r.stdout)
    dd = datasets.load_from_disk(str(project / "out" / "strat"))
    assert set(dd) == {"train", "test"}


def _card_funnel(card: str) -> dict[str, tuple[int, int]]:
    sec = card.split("## Funnel", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in sec.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] not in ("step", "---"):
            out[cells[0]] = (int(cells[3]), int(cells[4]))
    return out


def test_card_says_what_made_it_and_its_funnel_equals_the_store(ran):
    project, summary = ran
    card = (project / "out" / "chat" / "README.md").read_text(encoding="utf-8")
    front = card.split("---", 2)[1]
    assert "license: mit" in front and "- synthetic" in front and "- synthlang" in front
    assert "task_categories:" in front and "size_categories:" in front
    assert summary.run_id in card and "Cobbe et al." in card                 # run id; citation from SOURCE.md
    assert 'step a = answer(r, model=m, field=rq, n=3)' in card              # the recipe text
    assert "temperature=0.5" in card and "| limit | 8 |" in card              # models with sampling, params
    assert "Answer Augmentation" in card                                       # methods with their papers
    assert "synth run r.synth --param limit=8" in card                        # how to reproduce
    con = _con(project)
    store = dict(((s, (ok, failed)) for s, ok, failed in con.execute(
        "SELECT rr.step, count(*) FILTER (WHERE r.status='ok'), count(*) FILTER (WHERE r.status='failed') "
        "FROM run_rows rr JOIN rows r USING (row_id) WHERE rr.run_id = ? GROUP BY rr.step", [summary.run_id]).fetchall()))
    assert _card_funnel(card) == store
    from huggingface_hub import DatasetCard

    assert DatasetCard.load(project / "out" / "chat" / "README.md").data.license == "mit"


def test_card_warns_when_licences_disagree_or_are_missing(project):
    write(project / "extra.jsonl", '{"question": "What is 2+2?", "answer": "#### 4"}\n')
    text = BASE + """
source more = jsonl("extra.jsonl", license="cc-by-4.0") { question: str
  answer: str }
export v to "out/c" as chat
"""
    s = synthlang.run(synthlang.check_file(write(project / "r.synth", text)), db=project / "db.duckdb")
    assert any("licences disagree" in n and "cc-by-4.0" in n and "mit" in n for n in s.export_notes)
    card = (project / "out" / "c" / "README.md").read_text(encoding="utf-8")
    assert "license: other" in card
    write(project / "nolic.jsonl", '{"question": "What is 2+2?", "answer": "#### 4"}\n')
    text2 = BASE.replace("data/gsm8k/train_first1000.jsonl", "nolic.jsonl") + 'export v to "out/d" as chat\n'
    s2 = synthlang.run(synthlang.check_file(write(project / "r.synth", text2)), db=project / "db.duckdb")
    assert any("no licence declared for source seeds" in n for n in s2.export_notes)


@pytest.mark.parametrize("text, code, at", [
    ('export v to "out/x" as chat (messages=[user(rqq), assistant(reasoning)])', "unknown-field", "rqq"),
    ('export v to "out/x" as chat (split="train=0.9,test=0.2")', "bad-value", '"train'),
    ('export v to "out/x" as kto (label=reasoning)', "type-mismatch", "reasoning"),
    ('export v to "out/x" as chat (stratify=nosuch, split="train=0.5,test=0.5")', "unknown-field", "nosuch"),
    ('export v to "out/x" as preference (prompt=rq, chosen=reasoning)', "missing-option", "export"),
    ('export v to "out/x" as chat (fields=[rq])', "unknown-option", "fields"),
    ('export v to "out/x" as views (views=[forward(user=rq)])', "missing-option", "forward"),
    ('export v to "out/x" as chat (messages=[bot(rq)])', "type-mismatch", "bot"),
])
def test_bad_export_options_are_positioned_check_errors(project, text, code, at):
    lines = BASE.count("\n") + 1
    with pytest.raises(Diagnostics) as ei:
        synthlang.check_file(write(project / "r.synth", BASE + text + "\n"))
    errs = [e for e in ei.value.errors if e.code == code]
    assert errs, [e.render() for e in ei.value.errors]
    assert (errs[0].span.line, errs[0].span.col) == (lines, text.index(at) + 1)


def test_cli_export_agrees_with_the_recipe_export(ran):
    project, _ = ran
    r = synth("export", "v", "--to", "out/cli.jsonl", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0, r.stderr
    assert (project / "out" / "cli.jsonl").read_text(encoding="utf-8") == (project / "out" / "v.jsonl").read_text(encoding="utf-8")
    # input order: seeds in file order, then samples by index
    recs = [json.loads(x) for x in (project / "out" / "cli.jsonl").read_text(encoding="utf-8").splitlines()]
    src = [json.loads(x)["question"] for x in (project / "data/gsm8k/train_first1000.jsonl").read_text(encoding="utf-8").splitlines()[:8]]
    assert [recs[i]["question"] for i in range(0, 24, 3)] == src
    r = synth("export", "v", "--to", "out/f.jsonl", "--fields", "question,verified", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0, r.stderr
    first = json.loads((project / "out" / "f.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert list(first) == ["row_id", "question", "verified"]
    r = synth("export", "v", "--format", "chat", "--system", "Be brief.", "--map", "user=rq", "--map", "assistant=reasoning",
              "--to", "out/cli_chat", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0, r.stderr
    a, b = datasets.load_from_disk(str(project / "out" / "cli_chat")), datasets.load_from_disk(str(project / "out" / "chat"))
    assert [x["messages"][1:] for x in a] == [x["messages"][1:] for x in b]


LOOP = """
param limit: int = 3
model m = fake()
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=limit) {
  question: str
  answer: str
}
loop grow(rounds=3) {
  step written = new_question(seeds.new, model=m, field=question, k=2, min_words=1)
  step solved = answer(written, model=m, field=question) -> answer, gold
  step fresh = dedup(solved, field=question, mode="exact", against=seeds.all)
  feed seeds from fresh
}
step after = filter(seeds, where=len(question) > 0)
export grow to "out/grow.jsonl" as jsonl
export seeds to "out/pool.jsonl" as jsonl
"""


def test_loops_export_from_the_cli_with_fed_rows(project):
    s = synthlang.run(synthlang.check_file(write(project / "r.synth", LOOP)), db=project / "db.duckdb")
    fed = sum(x.rows_out for x in s.steps if x.name.startswith("fresh["))
    grow = (project / "out" / "grow.jsonl").read_text(encoding="utf-8")
    assert len(grow.splitlines()) == fed > 0
    pool = (project / "out" / "pool.jsonl").read_text(encoding="utf-8")
    assert len(pool.splitlines()) == 3 + fed     # the pool's export includes the rows fed back
    for name, want in (("grow", grow), ("seeds", pool)):
        r = synth("export", name, "--to", f"out/cli_{name}.jsonl", "--db", "db.duckdb", cwd=project)
        assert r.returncode == 0, r.stderr
        assert (project / "out" / f"cli_{name}.jsonl").read_text(encoding="utf-8") == want
    r = synth("show", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0 and "written[round 1]" in r.stdout, r.stdout + r.stderr


def test_partial_run_warns_and_zero_rows_fail(project):
    path = write(project / "r.synth", BASE)
    r = synth("run", "r.synth", "--db", "db.duckdb", "--max-calls", "5", "--quiet", cwd=project)
    assert r.returncode == 4, r.stdout + r.stderr
    r = synth("export", "r", "--to", "out/r.jsonl", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0 and "stopped by its budget" in r.stdout and "--run" in r.stdout, r.stdout + r.stderr
    r = synth("export", "v", "--to", "out/v.jsonl", "--db", "db.duckdb", cwd=project)
    # streaming (issue 9): v may have started beside r before the budget stopped the run, with no row yet
    assert r.returncode == 1 and ("no run in db.duckdb has a step 'v'" in r.stderr
                                  or "nothing exported" in r.stdout), r.stdout + r.stderr
    write(path, BASE + "step none = filter(v, where=len(rq) < 0)\n")
    assert synth("run", "r.synth", "--db", "db.duckdb", "--quiet", cwd=project).returncode == 0
    r = synth("export", "none", "--to", "out/none.jsonl", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 1 and "'none' has 0 rows to export" in r.stdout, r.stdout + r.stderr
    r = synth("export", "nosuch", "--to", "out/v.jsonl", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 1 and "no run" in r.stderr and "Traceback" not in r.stderr


def test_runs_and_show_read_the_store(ran):
    project, summary = ran
    r = synth("runs", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0 and summary.run_id in r.stdout
    r = synth("show", summary.run_id[:17], "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if re.match(r"│ a\s", x))
    assert re.search(r"│\s+8 │\s+24 │\s+0 │", line), line
    assert "cost: $0.0000" in r.stdout


def test_summary_commands_carry_db_and_failed_hint_is_this_run(project):
    write(project / "r.synth", BASE)
    r = synth("run", "r.synth", "--db", "my.duckdb", "--quiet", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "synth show" in r.stdout and "--db my.duckdb" in r.stdout
    assert "tok/s" in r.stdout and "USD" in r.stdout


def test_query_csv_ends_lines_with_lf_and_feeds_lineage(ran):
    project, _ = ran
    r = synth("query", "SELECT row_id FROM rows WHERE step='v' LIMIT 1", "--format", "csv", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0 and "\r" not in r.stdout
    rid = r.stdout.splitlines()[-1]
    r = synth("lineage", rid, "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0 and "verify" in r.stdout


def test_query_caps_terminal_rows_with_limit(ran):
    project, _ = ran
    r = synth("query", "SELECT * FROM range(50)", "--limit", "10", "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0 and "50 rows (40 more not shown" in r.stdout


# --------------------------------------------------------------- issue 11, items 2 and 7

RICH = """
recipe t "markup"
model m = fake()
source seeds = jsonl("markup.jsonl") { question: str }
step r = rephrase(seeds, model=m, field=question) -> rq
"""


def test_query_and_lineage_print_rich_markup_in_stored_text_literally(project):
    """Issue 11 item 7: stored text holding `[/INST]` or `[bold]` made `synth query`/`synth lineage` exit 3."""
    write(project / "markup.jsonl", json.dumps({"question": "<s>[INST] What is 2+2? [/INST] [bold]four[/bold] [/]"}) + "\n")
    write(project / "r.synth", RICH)
    assert synth("run", "r.synth", "--db", "db.duckdb", "--quiet", cwd=project).returncode == 0
    r = synth("query", "SELECT data->>'question' AS q FROM rows WHERE step='seeds'", "--db", "db.duckdb", "--width", "200",
              cwd=project)
    assert r.returncode == 0, r.stderr
    assert "[INST] What is 2+2? [/INST] [bold]four[/bold] [/]" in r.stdout
    rid = synth("query", "SELECT row_id FROM rows WHERE step='r'", "--format", "csv", "--db", "db.duckdb",
                cwd=project).stdout.splitlines()[-1]
    r = synth("lineage", rid, "--db", "db.duckdb", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "[/INST] [bold]four[/bold] [/]" in r.stdout


def test_export_does_not_follow_a_symlink_at_its_temp_path(tmp_path):
    """Issue 11 item 2: a repository shipping `out/r.jsonl.tmp` as a symlink to a file outside the project got that
    file overwritten by `export r to "out/r.jsonl"`."""
    import shutil

    from conftest import RECIPES

    proj = tmp_path / "proj"
    shutil.copytree(RECIPES / "data" / "gsm8k", proj / "data" / "gsm8k")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not touch\n")
    (proj / "out").mkdir()
    (proj / "out" / "r.jsonl.tmp").symlink_to(secret)
    write(proj / "r.synth", """
model m = fake()
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=3) { question: str
  answer: str }
step r = rephrase(seeds, model=m)
export r to "out/r.jsonl" as jsonl
""")
    res = synth("run", "r.synth", "--db", "db.duckdb", "--quiet", cwd=proj)
    assert res.returncode == 0, res.stdout + res.stderr
    assert secret.read_text() == "do not touch\n"
    assert len((proj / "out" / "r.jsonl").read_text().splitlines()) == 3
    assert not (proj / "out" / "r.jsonl").is_symlink()


@pytest.mark.parametrize("target, fmt", [("out/r.jsonl", "jsonl"), ("out/ds", "hf"), ("out/sub/r.parquet", "parquet")])
def test_export_through_a_symlink_out_of_the_project_is_refused(tmp_path, target, fmt):
    """Issue 11 item 2: every written path is confined once symlinks are resolved, HF folders included."""
    import shutil

    from conftest import RECIPES

    proj = tmp_path / "proj"
    shutil.copytree(RECIPES / "data" / "gsm8k", proj / "data" / "gsm8k")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep\n")
    (proj / "out").mkdir()
    if target == "out/r.jsonl":
        (proj / "out" / "r.jsonl").symlink_to(outside / "keep.txt")
    elif target == "out/ds":
        (proj / "out" / "ds").symlink_to(outside)
    else:
        (proj / "out" / "sub").symlink_to(outside)
    write(proj / "r.synth", f"""
model m = fake()
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=2) {{ question: str
  answer: str }}
export seeds to "{target}" as {fmt}
""")
    res = synth("run", "r.synth", "--db", "db.duckdb", "--quiet", cwd=proj)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "outside the project" in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"] and (outside / "keep.txt").read_text() == "keep\n"


def test_jsonl_export_writes_no_nan_or_infinity(tmp_path):
    from synthlang.execute.export import export_rows

    n = export_rows([("a", {"x": float("nan"), "y": [1.0, float("inf")], "z": "ok"})], tmp_path / "x.jsonl", "jsonl")
    assert n == 1
    line = (tmp_path / "x.jsonl").read_text()

    def refuse(c):
        raise ValueError(c)

    assert json.loads(line, parse_constant=refuse) == {"row_id": "a", "x": None, "y": [1.0, None], "z": "ok"}


def test_usd_per_step_in_the_summary_and_show(project):
    """Prices declared on an openai model: the run summary and `synth show` give the USD the calls recorded.
    The server is tests/batch_server.py (echo answers with token usage, no model): this is about cost accounting."""
    from batch_server import BatchServer

    server = BatchServer().start()
    try:
        write(project / "p.synth", f"""
model teacher = openai("m", base_url="{server.base_url}", temperature=0.7, max_tokens=16, price_input=250, price_output=1000)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=3) {{ question: str
  answer: str }}
step rephrased = rephrase(seeds, model=teacher) -> rephrased_question
""")
        run = synth("run", "p.synth", "--quiet", "--db", "p.duckdb", cwd=project, env={"OPENAI_API_KEY": "x"})
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    con = duckdb.connect(str(project / "p.duckdb"), read_only=True)
    metas = con.execute("SELECT meta, prompt_tokens, completion_tokens FROM calls WHERE step='rephrased'").fetchall()
    usd = sum(json.loads(m)["cost_usd"] for m, _, _ in metas)
    assert len(metas) == 3 and usd == pytest.approx(sum(p * 250 + c * 1000 for _, p, c in metas) / 1e6) and usd > 0.01
    line = next(x for x in run.stdout.splitlines() if "rephrased" in x and "rephrase " in x)
    shown = float(re.search(r"\$(\d+\.\d{4})", line).group(1))   # 4 decimals: compare within half a unit
    assert shown == pytest.approx(usd, abs=5.1e-5), line
    assert float(re.search(r"cost: \$(\d+\.\d+)", run.stdout).group(1)) == pytest.approx(usd, abs=5.1e-5)
    show = synth("show", "--db", "p.duckdb", cwd=project)
    assert show.returncode == 0, show.stderr
    assert float(re.search(r"cost: \$(\d+\.\d+)", show.stdout).group(1)) == pytest.approx(usd, abs=5.1e-5), show.stdout


def test_show_counts_a_step_the_budget_stopped(project):
    write(project / "r.synth", BASE)
    r = synth("run", "r.synth", "--db", "db.duckdb", "--max-calls", "5", "--quiet", cwd=project)
    assert r.returncode == 4, r.stdout + r.stderr
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    n_r = con.execute("SELECT count(*) FROM rows WHERE step='r' AND status='ok'").fetchone()[0]
    con.close()
    show = synth("show", "--db", "db.duckdb", cwd=project)
    assert show.returncode == 0, show.stderr
    line = next(x for x in show.stdout.splitlines() if re.match(r"│ r\s", x))
    assert re.search(rf"│\s+{n_r} │\s+0 │", line) and "budget" in show.stdout, show.stdout
