"""derive, explode, group, pair, join, union: checked fields, rows on real GSM8K seeds, and lineage in SQL.

The fake engine only supplies replies to shape rows; everything asserted here is the
relational steps' own row logic and the lineage the runner writes for it.
"""

from __future__ import annotations

import duckdb
import pytest
from conftest import write

import synthlang
from synthlang.errors import Diagnostics

pytestmark = pytest.mark.timeout(120)

BASE = """
model m = fake(max_tokens=32)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=3) {
  question: str
  answer: str
  gold = final_number(answer)
}
step a = answer(seeds, model=m, field=question, n=3)
"""


def _check(project, text):
    return synthlang.check_file(write(project / "r.synth", BASE + text))


def _run(project, factory, text):
    prog = _check(project, text)
    synthlang.run(prog, db=project / "db.duckdb", engine_factory=factory)
    return duckdb.connect(str(project / "db.duckdb"), read_only=True)


def _rows(con, step):
    import json

    return [json.loads(d) for (d,) in con.execute(
        "SELECT data FROM rows WHERE step = ? AND status = 'ok' ORDER BY created_at, row_id", [step]).fetchall()]


def _codes(project, text):
    with pytest.raises(Diagnostics) as ei:
        _check(project, text)
    return [(e.code, e.span.line) for e in ei.value.errors]


SEED_ANCESTORS = """
WITH RECURSIVE up(row_id, anc) AS (
  SELECT row_id, row_id FROM rows WHERE step = ?
  UNION SELECT up.row_id, l.parent_id FROM up JOIN lineage l ON l.child_id = up.anc
)
SELECT up.row_id, list(DISTINCT up.anc ORDER BY up.anc) FROM up JOIN rows r ON r.row_id = up.anc
WHERE r.step = 'seeds' GROUP BY up.row_id
"""


def test_derive_types_fields_and_evaluates_with_nulls(project, fake_factory):
    text = """
step d = derive(a, correct = final_answer == gold, label = "yes" if correct else "no",
                messages = [{role: "user", content: question}, {role: "assistant", content: reasoning}])
"""
    prog = _check(project, text)
    st = next(s for s in prog.steps if s.name == "d")
    assert st.fields_out["correct"] == "bool" and st.fields_out["label"] == "str" and st.fields_out["messages"] == "list"
    con = _run(project, fake_factory, text)
    rows = _rows(con, "d")
    assert len(rows) == 9
    for r in rows:
        want = None if r["final_answer"] is None else (abs(float(r["final_answer"]) - float(r["gold"])) < 1e-9)
        assert r["correct"] == want
        assert r["label"] == ("yes" if want is True else "no")
        assert r["messages"] == [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["reasoning"]}]


def test_derive_errors_are_positioned(project):
    codes = _codes(project, "step d = derive(a, x = nope + 1, y = question - 1)\n")
    assert ("unknown-field", 9) in codes and ("type-mismatch", 9) in codes
    assert ("missing-argument", 9) in _codes(project, "step d = derive(a)\n")


def test_explode_one_row_per_item_with_lineage(project, fake_factory):
    text = """
step w = derive(seeds, words = split(question, " "))
step e = explode(w, field=words) -> word, word_index
"""
    prog = _check(project, text)
    assert next(s for s in prog.steps if s.name == "e").fields_out["word"] == "any"
    con = _run(project, fake_factory, text)
    seeds = _rows(con, "seeds")
    rows = _rows(con, "e")
    assert len(rows) == sum(len(s["question"].split(" ")) for s in seeds)
    first = seeds[0]["question"].split(" ")
    got = sorted((r["word_index"], r["word"]) for r in rows if r["question"] == seeds[0]["question"])
    assert [w for _, w in got] == first and [k for k, _ in got] == list(range(len(first)))
    # each exploded row has exactly one parent: its w row
    n = con.execute("SELECT count(*) FROM lineage l JOIN rows c ON c.row_id = l.child_id WHERE c.step = 'e'").fetchone()[0]
    assert n == len(rows)


def test_explode_needs_a_list_field(project):
    assert ("type-mismatch", 9) in _codes(project, "step e = explode(seeds, field=question)\n")


def test_group_aggregates_and_lineage_to_every_member(project, fake_factory):
    text = """
step v = verify(a, field=final_answer, gold=gold)
step g = group(v, by=question, n=count(), acc=mean(verified), ok=any(verified), all_ok=all(verified),
               answers=list(final_answer), best=max(final_answer))
"""
    prog = _check(project, text)
    g = next(s for s in prog.steps if s.name == "g")
    fa = g.fields_in["final_answer"]
    assert g.fields_out == {"question": "str", "n": "int", "acc": "float", "ok": "bool", "all_ok": "bool",
                            "answers": "list" if fa == "any" else f"list[{fa}]", "best": fa}
    con = _run(project, fake_factory, text)
    v = _rows(con, "v")
    rows = _rows(con, "g")
    assert len(rows) == 3
    for r in rows:
        members = [x for x in v if x["question"] == r["question"]]
        vals = [x["verified"] for x in members if x["verified"] is not None]
        assert r["n"] == len(members) == 3
        assert r["acc"] == pytest.approx(sum(vals) / len(vals)) if vals else r["acc"] is None
        assert r["answers"] == [x["final_answer"] for x in members]
    parents = con.execute("""SELECT c.row_id, count(*) FROM lineage l JOIN rows c ON c.row_id = l.child_id
                             WHERE c.step = 'g' GROUP BY c.row_id""").fetchall()
    assert sorted(n for _, n in parents) == [3, 3, 3]


def test_group_rejects_non_aggregates(project):
    codes = _codes(project, "step g = group(a, by=question, x=final_answer, y=mean(question))\n")
    assert ("not-an-aggregate", 9) in codes and ("type-mismatch", 9) in codes


def test_pair_makes_best_worst_pairs_within_a_parent_and_lineage_reaches_the_seed(project, fake_factory):
    text = """
step s = derive(a, score = len(split(reasoning, "a")) + len(split(reasoning, "3")) + len(split(reasoning, "c")))
step p = pair(s, rank=score, field=reasoning)
"""
    con = _run(project, fake_factory, text)
    s = _rows(con, "s")
    pairs = _rows(con, "p")
    assert pairs, "three samples per seed with different scores must make pairs"
    for p in pairs:
        group = [x for x in s if x["question"] == p["question"]]
        scores = sorted(x["score"] for x in group)
        assert p["chosen_score"] == scores[-1] and p["rejected_score"] == scores[0] and scores[-1] > scores[0]
        assert p["rejected"] in [x["reasoning"] for x in group if x["score"] == scores[0]]
    # both rows are parents, and SQL lineage reaches the one seed of each pair
    two = con.execute("""SELECT count(*) FROM (SELECT l.child_id FROM lineage l JOIN rows c ON c.row_id = l.child_id
                         WHERE c.step = 'p' GROUP BY l.child_id HAVING count(*) = 2)""").fetchone()[0]
    assert two == len(pairs)
    anc = dict(con.execute(SEED_ANCESTORS, ["p"]).fetchall())
    assert len(anc) == len(pairs) and all(len(v) == 1 for v in anc.values())


def test_join_on_key_and_on_ancestry_reach_every_seed(project, fake_factory):
    text = """
step back = reverse(seeds, model=m) -> backward_question
step by_key = join(a, with=back, on=question)
step by_anc = join(a, with=back)
step left = join(a, with=back, on=final_answer, right_on=gold, how="left")
"""
    prog = _check(project, text)
    bk = next(s for s in prog.steps if s.name == "by_key")
    assert "backward_question" in bk.fields_out and "right_question" in bk.fields_out
    con = _run(project, fake_factory, text)
    a, back = _rows(con, "a"), _rows(con, "back")
    for step in ("by_key", "by_anc"):
        rows = _rows(con, step)
        assert len(rows) == len(a) == 9  # one backward row per seed, three answers per seed
        assert all(r["right_question"] == r["question"] for r in rows)
        anc = dict(con.execute(SEED_ANCESTORS, [step]).fetchall())
        assert len(anc) == 9 and all(len(v) == 1 for v in anc.values())
        edges = con.execute("SELECT count(*) FROM lineage l JOIN rows c ON c.row_id = l.child_id WHERE c.step = ?",
                            [step]).fetchone()[0]
        assert edges == 18  # every joined row has two parents: its answer row and its backward row
    left = _rows(con, "left")
    golds = {b["gold"] for b in back}
    matched = [r for r in a if r["final_answer"] in golds]
    unmatched = [r for r in a if r["final_answer"] not in golds]
    assert len(left) >= len(matched) + len(unmatched)
    assert sum(1 for r in left if r["backward_question"] is None) == len(unmatched)


def test_join_key_must_exist_on_the_other_side(project):
    codes = _codes(project, "step j = join(a, with=seeds, on=final_answer)\n")
    assert ("unknown-field", 9) in codes


def test_union_by_name_keeps_both_sides_lineage(project, fake_factory):
    text = """
step q = rephrase(seeds, model=m) -> rq
step u = union(seeds, with=q)
"""
    prog = _check(project, text)
    u = next(s for s in prog.steps if s.name == "u")
    assert set(u.fields_out) == {"question", "answer", "gold", "rq"}
    con = _run(project, fake_factory, text)
    rows = _rows(con, "u")
    assert len(rows) == 6 and sum(1 for r in rows if r["rq"] is None) == 3
    anc = dict(con.execute(SEED_ANCESTORS, ["u"]).fetchall())
    assert len(anc) == 6


def test_union_type_clash_is_an_error(project):
    text = "step d = derive(seeds, gold = str(gold))\nstep u = union(seeds, with=d)\n"
    assert ("type-mismatch", 10) in _codes(project, text)


def test_with_reads_a_step_declared_later(project, fake_factory):
    """A `with=` read orders the steps like an input does; a cycle through it is reported."""
    text = "step u = union(seeds, with=later)\nstep later = filter(seeds, where=true)\n"
    prog = _check(project, text)
    names = [s.name for s in prog.steps]
    assert names.index("later") < names.index("u")
    text = "step x = union(seeds, with=y)\nstep y = union(x, with=seeds)\n"
    assert any(c == "dependency-cycle" for c, _ in _codes(project, text))


REAL = """
model m = embedded(temperature=0.8, max_tokens=24)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=1) {
  question: str
  answer: str
  gold = final_number(answer)
}
step a = answer(seeds, model=m, field=question, n=2, on_truncation="keep")
step graded = derive(a, correct = final_answer == gold, words = split(reasoning, " "))
step prefs = pair(graded, rank=len(reasoning), field=reasoning)
step per_q = group(graded, by=question, n=count(), acc=mean(correct), answers=list(final_answer))
step back = rephrase(seeds, model=m, on_truncation="keep") -> backward_question   # a second LLM branch (reverse now refuses near-empty backward questions, which a 135M model often writes)
step both = join(graded, with=back)
step tokens = explode(graded, field=words) -> word, word_index
step everything = union(seeds, with=back)
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_relational_step_runs_on_the_real_embedded_engine(project):
    """Real SmolLM2 replies (via llama.cpp) flow through derive, pair, group, join, explode and union."""
    prog = synthlang.check_file(write(project / "real.synth", REAL))
    summary = synthlang.run(prog, db=project / "db.duckdb")
    assert summary.status == "finished" and summary.calls_made == 3
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    graded = _rows(con, "graded")
    assert len(graded) == 2 and all(g["words"] == g["reasoning"].split(" ") for g in graded)
    (g,) = _rows(con, "per_q")
    assert g["n"] == 2 and sorted(map(str, g["answers"])) == sorted(str(x["final_answer"]) for x in graded)
    assert len(_rows(con, "both")) == 2
    assert len(_rows(con, "tokens")) == sum(len(x["words"]) for x in graded)
    assert len(_rows(con, "everything")) == 2
    lens = sorted(len(x["reasoning"]) for x in graded)
    prefs = _rows(con, "prefs")
    assert len(prefs) == (1 if lens[0] != lens[1] else 0)
    for step in ("both", "prefs", "per_q", "tokens"):
        anc = dict(con.execute(SEED_ANCESTORS, [step]).fetchall())
        assert len(anc) == len(_rows(con, step)), f"{step}: every row reaches the seed"
