"""An instant OpenAI-compatible chat server on loopback that answers every request after a fixed latency.

It stands in for a provider whose model answers in ``--latency`` seconds whatever the load (issue 9's
"instant loopback OpenAI-compatible server, 50 ms latency"), so a benchmark measures the client, not the
server. It runs in its own process (``python bench/loopback_server.py --latency 0.05``; it prints
``PORT <n>`` once listening) so it never competes with the client for the client's GIL, and it is a single
asyncio loop speaking HTTP/1.1 with keep-alive, so a few thousand requests per second cost it little CPU.

Every ``POST .../chat/completions`` gets a well-formed chat completion whose text quotes the end of the last
message and ends with "The answer is 7.", with ``usage`` of 10 prompt and 10 completion tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


def _reply(body: dict, n: int) -> bytes:
    msgs = body.get("messages") or [{"content": ""}]
    text = "Rewritten: " + str(msgs[-1].get("content") or "")[-80:] + "\nThe answer is 7."
    return json.dumps({"id": f"c{n}", "object": "chat.completion", "created": 0, "model": body.get("model"),
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}).encode()


async def serve(latency: float, port: int) -> None:
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip())
                raw = await reader.readexactly(length) if length else b"{}"
                count += 1
                out = _reply(json.loads(raw or b"{}"), count)
                await asyncio.sleep(latency)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(out)).encode() + b"\r\n\r\n" + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds before each reply")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    try:
        asyncio.run(serve(a.latency, a.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
