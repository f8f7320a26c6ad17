"""Non-ASCII text comes back byte-identical through the store and every export format (jsonl, hf, parquet).

Runs a real recipe (fake engine) whose seeds are CJK, emoji (incl. ZWJ sequences and flags),
right-to-left scripts, combining marks (NFD, which must not be normalised to NFC), and control-ish
characters; exports through the recipe and through ``synth export``; reads everything back with
independent readers (json, pyarrow, datasets, duckdb).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import REPO, write

TEXTS = [
    "汉字かなカナ한국어 — 三十七加五等于几？",
    "emoji 👩🏽‍🔬 🏳️‍🌈 🇯🇵 1️⃣ 🧑‍🤝‍🧑",
    "עברית: כמה זה 3 + 4? والعربية: ما هو ٣ + ٤؟",
    "e\u0301 a\u0308 n\u0303 \u1100\u1161\u11a8 (NFD, combining marks)",
    "tab\there, nbsp\u00a0, zwsp\u200b, bom\ufeff, ls\u2028end, ps\u2029, nel\x85, rlm\u200f, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 astral",
    'quotes " \' \\ and {{ braces }} and a\nnewline',
]

RECIPE = """
recipe uni "unicode"
model m = fake(temperature=0.5, max_tokens=32)
source seeds = jsonl("data/u.jsonl") {
  id: int
  question: str
}
step g = generate(seeds, model=m, prompt="Echo: {{ question }}")
export g to "out/g.jsonl" as jsonl
export g to "out/g.parquet" as parquet
export g to "out/g_hf" as hf
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    root = tmp_path_factory.mktemp("uni")
    assert unicodedata.normalize("NFC", TEXTS[3]) != TEXTS[3]
    write(root / "data" / "u.jsonl", "\n".join(json.dumps({"id": i, "question": t}, ensure_ascii=False)
                                               for i, t in enumerate(TEXTS)) + "\n")
    write(root / "u.synth", RECIPE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "synthlang.cli.main", "run", "u.synth", "--quiet"], cwd=root,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    for fmt, to in (("jsonl", "cli.jsonl"), ("parquet", "cli.parquet"), ("hf", "cli_hf")):
        e = subprocess.run([sys.executable, "-m", "synthlang.cli.main", "export", "g", "--to", f"out/{to}",
                            "--format", fmt], cwd=root, capture_output=True, text=True, timeout=120, env=env)
        assert e.returncode == 0, e.stderr
    return root


def _by_id(records):
    return {int(r["id"]): r for r in records}


def _check(records):
    got = _by_id(records)
    assert sorted(got) == list(range(len(TEXTS)))
    for i, t in enumerate(TEXTS):
        assert got[i]["question"].encode("utf-8") == t.encode("utf-8")
        assert t[-40:] in got[i]["text"]                    # the fake reply echoes the prompt's tail unchanged


def test_store_keeps_bytes(ran):
    con = duckdb.connect(str(ran / ".synth" / "synth.duckdb"), read_only=True)
    rows = [json.loads(d) for (d,) in con.execute("select data from rows where step='g'").fetchall()]
    prompts = [json.loads(m)[-1]["content"] for (m,) in con.execute("select messages from calls").fetchall()]
    typed = dict(con.execute("select id, question from step_g").fetchall())
    con.close()
    _check(rows)
    assert sorted(prompts) == sorted(f"Echo: {t}".strip() for t in TEXTS)
    assert {int(k): v for k, v in typed.items()} == dict(enumerate(TEXTS))


@pytest.mark.parametrize("name", ["g.jsonl", "cli.jsonl"])
def test_jsonl_export(ran, name):
    raw = (ran / "out" / name).read_bytes()
    lines = raw.decode("utf-8").splitlines()             # safe even for readers that split on U+2028 / U+0085
    assert len(lines) == len(TEXTS) == raw.count(b"\n")
    assert "👩🏽‍🔬".encode() in raw                     # written as UTF-8, not \\u escapes
    _check([json.loads(x) for x in lines])


@pytest.mark.parametrize("name", ["g.parquet", "cli.parquet"])
def test_parquet_export(ran, name):
    table = pq.read_table(ran / "out" / name)
    assert table.num_rows == len(TEXTS)
    assert {"row_id", "id", "question", "text"} <= set(table.column_names)
    _check(table.to_pylist())
    # and DuckDB reads the same bytes
    con = duckdb.connect()
    got = dict(con.execute(f"select id, question from read_parquet('{ran / 'out' / name}')").fetchall())
    assert got == dict(enumerate(TEXTS))


@pytest.mark.parametrize("name", ["g_hf", "cli_hf"])
def test_hf_export(ran, name):
    from datasets import load_from_disk

    ds = load_from_disk(str(ran / "out" / name))
    assert len(ds) == len(TEXTS)
    _check(list(ds))
