#!/usr/bin/env bash
# The GPU checks in one command, on a machine with one CUDA GPU (written for an H100/H200-class card):
#
#   bash benchmarks/gpu.sh
#
# 1. Python: PREFGATE_PYTHON if set (a python that already has prefgate's dependencies, `pip install -e '.[test]'`,
#    and a CUDA build of torch); otherwise `bash dev.sh setup` makes the venv (PREFGATE_VENV, default .venv) with
#    PREFGATE_TORCH (default torch==2.13.0 from PyPI, whose Linux wheel is built for CUDA 12).
# 2. bitsandbytes (the QLoRA test) and liger-kernel (TRL with Liger's kernels) are tried with pip; where one does
#    not install, the test or run that needs it is skipped and this script says so.
# 3. The GPU tests: `pytest -m gpu` (flex-attention prefix-shared forward vs concatenated, bf16 training vs float32,
#    QLoRA) and tests/train/test_bf16.py, which on a GPU machine trains on the GPU.
# 4. benchmarks/vs_trl.py at bf16 on the ~0.5B config (Qwen2-0.5B's shape: 24 layers, hidden 896, vocab 151936;
#    untied embeddings, so 630M parameters): prefgate (prefix-shared, flex attention, pairs packed into 8192-token
#    rows; `model.gradient_checkpointing: auto`, which takes selective at this width, and a side with it off, so the
#    run shows what selective checkpointing costs on a GPU) against TRL 1.16 DPOTrainer, then against TRL with
#    Liger's kernels where liger-kernel installed. Each prints pairs/s and its ratio, data tokens/s, MFU and peak GPU
#    memory per side.
#
# Everything printed is also kept in PREFGATE_GPU_OUT (default /tmp/prefgate-gpu): tests.txt, vs_trl*.txt and the
# raw per-step figures vs_trl*.jsonl. Exit status: 0 when the tests passed and both benchmark runs finished.
# Budget: written to finish in under 8 minutes on one H200 after set-up; not yet measured (no session had a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${PREFGATE_GPU_OUT:-/tmp/prefgate-gpu}
mkdir -p "$OUT"

if [ -n "${PREFGATE_PYTHON:-}" ]; then
    PY=$PREFGATE_PYTHON
else
    bash dev.sh setup || exit 2
    PY=${PREFGATE_VENV:-.venv}/bin/python
fi

"$PY" - <<'EOF' || exit 2
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"gpu.sh: torch {torch.__version__} sees no CUDA GPU (CUDA build: {torch.version.cuda}); use a venv with "
             "a CUDA build of torch: PREFGATE_VENV=.venv-gpu bash benchmarks/gpu.sh (or PREFGATE_PYTHON=...)")
props = torch.cuda.get_device_properties(0)
print(f"# GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

try_install() {  # module, pip requirement, what is skipped without it
    if "$PY" -c "import $1" 2>/dev/null; then return 0; fi
    if "$PY" -m pip install -q --disable-pip-version-check "$2" >"$OUT/pip-$1.log" 2>&1 && "$PY" -c "import $1" 2>/dev/null
    then echo "# installed $2"
    else echo "# $2 did not install (see $OUT/pip-$1.log): $3"; return 1
    fi
}
try_install bitsandbytes "bitsandbytes>=0.45" "the QLoRA test is skipped"
try_install liger_kernel "liger-kernel>=0.5" "TRL runs without Liger's kernels only" && liger=1 || liger=0

start=$SECONDS
status=0
echo "## GPU tests"
"$PY" -m pytest -p no:cacheprovider -q -rs tests/train/test_gpu.py tests/train/test_bf16.py 2>&1 | tee "$OUT/tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

bench=(benchmarks/vs_trl.py --device cuda --dtype bf16 --config 0.5b --attn flex_attention --pack-tokens 8192
       --rounds 1 --steps 5)
echo "## prefgate vs TRL 1.16, bf16, ~0.5B parameters"
"$PY" "${bench[@]}" --ckpt-side off --json "$OUT/vs_trl.jsonl" 2>&1 | tee "$OUT/vs_trl.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if [ "$liger" = 1 ]; then
    echo "## prefgate vs TRL 1.16 with Liger's kernels (prompt-heavy shape)"
    "$PY" "${bench[@]}" --shapes prompt-heavy --trl-liger --json "$OUT/vs_trl_liger.jsonl" 2>&1 \
        | tee "$OUT/vs_trl_liger.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
echo "# gpu.sh: $((SECONDS - start)) s after set-up; status $status; output kept in $OUT"
exit $status
