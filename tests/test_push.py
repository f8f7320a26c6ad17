"""``synth push`` and ``push_to_hub=`` with the real ``huggingface_hub`` client against a STAND-IN Hub server on
loopback (tests/hub_standin.py: only the endpoints used, not the Hub). The pushed Parquet shards load with
``load_dataset("parquet", ...)``, the token reaches neither the store nor the files, and a ``synth run`` of the
pushed recipe bundle reproduces the same call keys. Fake engine: this tests the push, not an engine.
"""

from __future__ import annotations

import json
import shutil

import datasets
import duckdb
import pytest
from conftest import synth, write
from hub_standin import HubStandIn

pytestmark = pytest.mark.timeout(300)

TOKEN = "hf_standin_SECRET_0123456789"

RECIPE = """
recipe pushme "Rephrase and answer, pushed to the Hub"
param limit: int = 6
model m = fake(temperature=0.5, max_tokens=32)
source seeds = jsonl("data/gsm8k/train_first1000.jsonl", limit=limit) {
  question: str
  answer: str
  gold = final_number(answer)
}
template ask = file("templates/ask.j2")
step r = rephrase(seeds, model=m, prompt=ask) -> rq
step a = answer(r, model=m, field=rq, n=2)
step v = verify(a, field=final_answer, gold=gold)
"""


@pytest.fixture
def hub(tmp_path):
    h = HubStandIn(tmp_path / "hub").start()
    yield h
    h.stop()


def _env(hub, tmp_path):
    return {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1"}


def _call_keys(db):
    con = duckdb.connect(str(db), read_only=True)
    return {k for (k,) in con.execute("SELECT call_key FROM calls").fetchall()}


def test_push_then_run_the_pushed_bundle_reproduces_the_call_keys(project, hub, tmp_path):
    write(project / "templates" / "ask.j2", "Rephrase this question, keep every number:\n{{ question }}\n")
    write(project / "r.synth", RECIPE)
    assert synth("run", "r.synth", "--param", "limit=4", "--db", "db.duckdb", "--quiet", cwd=project).returncode == 0
    r = synth("push", "v", "--repo", "org/gsm8k-chat", "--format", "chat", "--split", "train=0.5,test=0.5",
              "--db", "db.duckdb", cwd=project, env=_env(hub, tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    repo = tmp_path / "hub" / "org" / "gsm8k-chat"
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    assert files == ["README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet",
                     "recipe/data/gsm8k/SOURCE.md", "recipe/data/gsm8k/train_first1000.jsonl", "recipe/r.synth",
                     "recipe/templates/ask.j2"]
    assert hub.repos["org/gsm8k-chat"]["type"] == "dataset"
    assert all(a == f"Bearer {TOKEN}" for a in hub.auth if a), "the client sent the token from HF_TOKEN"
    ds = datasets.load_dataset("parquet", data_files={s: str(repo / f"data/{s}-00000-of-00001.parquet") for s in ("train", "test")})
    assert len(ds["train"]) + len(ds["test"]) == 8 and ds["train"].column_names == ["messages"]
    card = (repo / "README.md").read_text(encoding="utf-8")
    meta = hub.validated[-1]
    assert meta["license"] == "mit" and "synthetic" in meta["tags"]
    assert {c["split"] for c in meta["configs"][0]["data_files"]} == {"train", "test"}
    assert "synth run recipe/r.synth --param limit=4" in card
    # the token is nowhere: not in the pushed files, not in the store
    for p in repo.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p
    con = duckdb.connect(str(project / "db.duckdb"), read_only=True)
    for (table,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema='main'").fetchall():
        dump = tmp_path / f"{table}.csv"
        con.execute(f"COPY (SELECT * FROM {table}) TO '{dump}' (HEADER)")
        assert TOKEN not in dump.read_text(encoding="utf-8", errors="replace"), table
    con.close()
    # a downloaded copy of the bundle re-creates the run: the same calls, keyed the same
    down = tmp_path / "downloaded"
    shutil.copytree(repo, down)
    r = synth("run", "recipe/r.synth", "--param", "limit=4", "--db", "fresh.duckdb", "--quiet", cwd=down)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _call_keys(down / "fresh.duckdb") == _call_keys(project / "db.duckdb") != set()


def test_recipe_export_with_push_to_hub(project, hub, tmp_path):
    write(project / "templates" / "ask.j2", "Rephrase: {{ question }}\n")
    write(project / "r.synth", RECIPE + 'export v to "out/kto" as kto (label=verified, push_to_hub="org/kto", private=true)\n')
    r = synth("run", "r.synth", "--db", "db.duckdb", "--quiet", cwd=project, env=_env(hub, tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pushed 6 files to" in r.stdout, r.stdout[-1500:]   # README, 1 shard, 4 bundle files
    assert hub.repos["org/kto"]["private"] is True
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "hub/org/kto/data/train-00000-of-00001.parquet"))
    assert ds["train"].features["label"] == datasets.Value("bool") and len(ds["train"]) == 12


def test_push_without_a_token_is_a_clear_error(project, hub, tmp_path):
    write(project / "templates" / "ask.j2", "Rephrase: {{ question }}\n")
    write(project / "r.synth", RECIPE)
    assert synth("run", "r.synth", "--db", "db.duckdb", "--quiet", cwd=project).returncode == 0
    env = {**_env(hub, tmp_path), "HF_TOKEN": ""}
    r = synth("push", "v", "--repo", "org/x", "--db", "db.duckdb", cwd=project, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "token" in r.stderr.lower() or "refused" in r.stderr.lower(), r.stderr
    json.dumps(hub.unknown)
