"""llama.cpp model loading without ggml's "extra buffer types" (weight repacking, the AMX path).

On Xeon CPUs with AMX (Sapphire Rapids and later) under a hypervisor, llama-cpp-python 0.3.36 built with
``GGML_NATIVE`` compiles ggml's AMX matmul, which then crashes the process with SIGSEGV in
``ggml_backend_amx_mul_mat`` on the first decode (seen on this project's CI machine, 2026-12-01). llama.cpp's
``llama_model_params.use_extra_bufts = false`` keeps weights in plain CPU buffers, which skips that path
whatever the build. ``Llama(...)`` does not take that parameter, so :func:`plain_buffers` sets it on the
defaults that ``Llama.__init__`` reads, for the duration of a load.

``python -m synthlang.engines.llama_compat ARGS`` runs ``llama_cpp.server`` (same arguments) with the same
setting; the tests start their OpenAI-compatible llama.cpp server that way.

Set ``SYNTH_LLAMA_EXTRA_BUFFERS=1`` to keep llama.cpp's defaults (repacked weights) on CPUs where they work.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()


def _plain_defaults(orig: Any) -> Any:
    """Wrap ``llama_model_default_params`` so that the defaults it returns say ``use_extra_bufts=False``."""

    def defaults() -> Any:
        p = orig()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    return defaults


@contextlib.contextmanager
def plain_buffers() -> Iterator[None]:
    """While active, models loaded by ``llama_cpp.Llama`` use ``use_extra_bufts=False``.

    Thread-safe (loads are serialised). A no-op when ``SYNTH_LLAMA_EXTRA_BUFFERS=1``.
    """
    if os.environ.get("SYNTH_LLAMA_EXTRA_BUFFERS") == "1":
        yield
        return
    import llama_cpp
    import llama_cpp.llama as llama_mod

    with _lock:
        orig = llama_cpp.llama_model_default_params
        llama_mod.llama_cpp.llama_model_default_params = _plain_defaults(orig)
        try:
            yield
        finally:
            llama_mod.llama_cpp.llama_model_default_params = orig


def serve() -> None:
    """Run ``llama_cpp.server``'s command line with :func:`plain_buffers` in force for the whole process."""
    import runpy

    import llama_cpp
    import llama_cpp.llama as llama_mod

    if os.environ.get("SYNTH_LLAMA_EXTRA_BUFFERS") != "1":
        llama_mod.llama_cpp.llama_model_default_params = _plain_defaults(llama_cpp.llama_model_default_params)
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    serve()
