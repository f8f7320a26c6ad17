"""Issue 11 items 6 and 17 on the OpenAI-compatible engine, against a scripted local HTTP server
(tests/stubserver.py): an API key echoed by a server never reaches the store or the terminal, and a
storm of 429s is waited out until a documented deadline, honouring Retry-After.
"""

from __future__ import annotations

import json
import time

import duckdb
import pytest
from conftest import write
from stubserver import StubServer, completion

import synthlang
from synthlang.engines.openai import redact

KEY = "sk-live-THIS-KEY-MUST-NOT-LEAK-0123456789"

RECIPE = """recipe o "openai"
model m = openai("stub", base_url="URL", api_key_env="SYNTH_TEST_KEY", max_retries=1, concurrency=4OPTS)
source g = jsonl("data/g.jsonl") {
  question: str
}
step r = rephrase(g, model=m) -> rq
"""


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_TEST_KEY", KEY)
    write(tmp_path / "data" / "g.jsonl", "\n".join(json.dumps({"question": f"What is {i} + {i}?"}) for i in range(6)) + "\n")
    return tmp_path


def _echo_headers(n, headers, body):
    msg = {"error": {"message": f"upstream crashed; request was {json.dumps(headers)}", "type": "server_error"}}
    return 500, {"Content-Type": "application/json"}, json.dumps(msg).encode()


def _recipe(proj, server, opts=""):
    return write(proj / "r.synth", RECIPE.replace("URL", server.base_url).replace("OPTS", opts))


@pytest.mark.timeout(120)
def test_a_key_echoed_in_a_500_body_is_redacted_before_it_is_stored(proj):
    server = StubServer(_echo_headers).start()
    try:
        s = synthlang.run(synthlang.check_file(_recipe(proj, server)), db=proj / "db.duckdb")
        assert {x.name: x for x in s.steps}["r"].rows_failed == 6
        assert server.posts == 12    # one retry each: the 500s did reach the server
        con = duckdb.connect(str(proj / "db.duckdb"), read_only=True)
        errors = [e for (e,) in con.execute("select error from calls").fetchall()]
        con.close()
        assert len(errors) == 6 and all("Bearer [REDACTED]" in e and "HTTP 500" in e for e in errors), errors[0]
        assert KEY.encode() not in (proj / "db.duckdb").read_bytes()
        assert KEY[8:30].encode() not in (proj / "db.duckdb").read_bytes()
        server.handler = lambda n, h, b: completion("What is the sum of the two numbers?")
        s = synthlang.run(synthlang.check_file(_recipe(proj, server)), db=proj / "db.duckdb", retry_failed=True)
        assert {x.name: x for x in s.steps}["r"].rows_failed == 0
        assert KEY.encode() not in (proj / "db.duckdb").read_bytes()
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_a_key_echoed_in_a_401_is_redacted_in_the_cli_message(proj):
    from conftest import synth

    server = StubServer(lambda n, h, b: (401, {"Content-Type": "application/json"}, json.dumps(
        {"error": {"message": f"bad key {h.get('Authorization') or h.get('authorization')}"}}).encode())).start()
    try:
        _recipe(proj, server)
        r = synth("run", "r.synth", "--quiet", "--db", "db.duckdb", cwd=proj, env={"SYNTH_TEST_KEY": KEY})
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert "refused the API key" in r.stderr and "[REDACTED]" in r.stderr, r.stderr
        assert KEY not in r.stderr + r.stdout and KEY[8:30] not in r.stderr
    finally:
        server.stop()


def test_redact_patterns():
    assert redact(f"x {KEY} y", (KEY,)) == "x [REDACTED] y"
    assert redact("Authorization: Bearer abcdefgh12345678") == "Authorization: Bearer [REDACTED]"
    assert redact('{"api_key": "zzzzzzzz99999999"}') == '{"api_key": "[REDACTED]"}'
    assert redact("key sk-proj-abcdefghijkl") == "key sk-[REDACTED]"
    assert redact("HTTP 500: plain error, 12 rows") == "HTTP 500: plain error, 12 rows"
    assert redact(None) is None


def _storm(until_s, retry_after="0.2"):
    t0 = [None]

    def handler(n, headers, body):
        if t0[0] is None:
            t0[0] = time.monotonic()
        if time.monotonic() - t0[0] < until_s:
            return 429, {"Content-Type": "application/json", "Retry-After": retry_after}, \
                b'{"error": {"message": "rate limited", "type": "rate_limit"}}'
        return completion("What is the total of both numbers?")
    return handler


@pytest.mark.timeout(120)
def test_a_429_storm_longer_than_max_retries_is_waited_out(proj):
    server = StubServer(_storm(3.0)).start()
    try:
        s = synthlang.run(synthlang.check_file(_recipe(proj, server)), db=proj / "db.duckdb")
        r = {x.name: x for x in s.steps}["r"]
        assert r.rows_failed == 0 and r.calls_made == 6
        assert server.posts > 6 * 3    # far more 429s than max_retries=1 would have allowed
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_a_429_storm_past_the_deadline_fails_the_rows_with_the_reason(proj):
    server = StubServer(_storm(60.0)).start()
    try:
        t0 = time.monotonic()
        s = synthlang.run(synthlang.check_file(_recipe(proj, server, ", rate_limit_deadline_s=1.5")), db=proj / "db.duckdb")
        assert time.monotonic() - t0 < 30
        assert {x.name: x for x in s.steps}["r"].rows_failed == 6
        con = duckdb.connect(str(proj / "db.duckdb"), read_only=True)
        errors = {e for (e,) in con.execute("select error from calls").fetchall()}
        con.close()
        [err] = errors
        assert "429 rate limited" in err and "still rate limited 1.5 s after the first attempt" in err, err
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_retry_after_is_honoured(proj):
    """A 429 with Retry-After: 1 is retried no sooner than 1 s later."""
    seen: list[float] = []

    def handler(n, headers, body):
        seen.append(time.monotonic())
        if n == 1:
            return 429, {"Content-Type": "application/json", "Retry-After": "1"}, b'{"error": {"message": "slow down"}}'
        return completion("What is the sum of zero and zero?")

    server = StubServer(handler).start()
    try:
        write(proj / "data" / "g.jsonl", json.dumps({"question": "What is 0 + 0?"}) + "\n")
        s = synthlang.run(synthlang.check_file(_recipe(proj, server)), db=proj / "db.duckdb")
        assert {x.name: x for x in s.steps}["r"].rows_failed == 0
        assert len(seen) == 2 and seen[1] - seen[0] >= 0.95
    finally:
        server.stop()
