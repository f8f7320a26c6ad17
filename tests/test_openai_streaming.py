"""The openai engine pulls its requests lazily (issue 9): a request stream that blocks while upstream steps
are still making rows does not stall the calls in flight, a plain list still works, a stream is read only as
slots free up, and ``extra_body`` knobs reach the server at the top level of the JSON body.

Against ``tests/stubserver.py``, a real local HTTP server speaking the chat completions protocol."""

from __future__ import annotations

import threading
import time

from stubserver import StubServer, completion

from synthlang.engines.base import Request, SamplingParams
from synthlang.engines.openai import OpenAIEngine

SP = SamplingParams(temperature=0.0, max_tokens=8, top_k=5)


def _req(i: int) -> Request:
    return Request(f"k{i}", ({"role": "user", "content": f"question {i}"},), SP, i)


def _engine(server: StubServer, concurrency: int = 4) -> OpenAIEngine:
    return OpenAIEngine("stub", base_url=server.base_url, concurrency=concurrency, adaptive=False, timeout=10)


def test_engine_declares_it_streams_requests():
    assert OpenAIEngine.streams_requests is True


def test_a_blocking_request_stream_does_not_stall_the_calls_in_flight():
    bodies = []
    server = StubServer(lambda n, h, body: (bodies.append(body), completion(f"reply {n}"))[1]).start()
    first_result = threading.Event()

    def stream():
        yield _req(0)
        yield _req(1)
        # upstream is still working: the next request only exists once a result came back
        assert first_result.wait(10), "no result arrived while the stream was blocked"
        yield _req(2)

    engine = _engine(server)
    try:
        got = []
        for res in engine.generate(stream()):
            got.append(res)
            first_result.set()
        assert sorted(r.key for r in got) == ["k0", "k1", "k2"]
        assert all(r.error is None and r.text.startswith("reply") for r in got)
        # the non-OpenAI knob travels at the top level of the body, as create(extra_body=...) sends it
        assert all(b.get("top_k") == 5 and "extra_body" not in b for b in bodies)
        # each request reached the server once (0 and 1 are in flight together, so their arrival order is free)
        assert sorted(b["messages"][0]["content"] for b in bodies) == ["question 0", "question 1", "question 2"]
    finally:
        engine.close()
        server.stop()


def test_a_plain_list_works_and_results_carry_usage():
    server = StubServer(lambda n, h, body: completion("ok")).start()
    engine = _engine(server)
    try:
        got = list(engine.generate([_req(i) for i in range(10)]))
        assert sorted(r.key for r in got) == sorted(f"k{i}" for i in range(10))
        assert all(r.text == "ok" and r.prompt_tokens == 5 and r.completion_tokens == 1 for r in got)
    finally:
        engine.close()
        server.stop()


def test_a_stream_is_read_only_as_slots_free_up():
    release = threading.Event()
    in_server = []

    def slow(n, h, body):
        in_server.append(n)
        release.wait(10)
        return completion("ok")

    server = StubServer(slow).start()
    pulled = []

    def stream():
        for i in range(6):
            pulled.append(i)
            yield _req(i)

    engine = _engine(server, concurrency=2)
    try:
        out = []
        t = threading.Thread(target=lambda: out.extend(engine.generate(stream())), daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        while len(in_server) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert len(pulled) <= 3   # 2 in flight, at most one more waiting for a slot; never the whole stream
        release.set()
        t.join(20)
        assert sorted(r.key for r in out) == [f"k{i}" for i in range(6)]
    finally:
        release.set()
        engine.close()
        server.stop()
