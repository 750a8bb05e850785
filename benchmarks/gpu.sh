#!/usr/bin/env bash
# Training throughput on the lent GPU machine, in under 5 minutes from a bare checkout: mura's
# training loop against the plain torchvision-reference loop in the same run (img/s of each, the
# ratio, MFU), densenet169@320 and vgg16@224 first, then a profile, evaluation images/s, a real
# `mura train` of 2 epochs, torch.compile modes and the batch x precision matrix, as far as
# --budget-s allows (see benchmarks/gpu.py and benchmarks/README.md).
#
#   bash benchmarks/gpu.sh                        # on the GPU machine, from the repository root
#   bash benchmarks/gpu.sh --device cpu --smoke   # checks the script anywhere
#
# muracli need not be installed: it runs from src/ with the preinstalled torch. It generates a
# synthetic dataset (1,100 studies, about 3,000 images, long side 384: what
# `mura download --synthetic --studies 1100 --max-side 384` makes) and caches at 224 and 320 px
# in a temporary folder. The JSON goes to stdout and, when $OUT is set, to $OUT/gpu.json
# (rewritten after every configuration, so a cut-off run keeps what it measured) with the table
# in $OUT/gpu.txt and the kernel profile in $OUT/profile-densenet169-320.txt; the table comes last.
# Extra arguments go to gpu.py (e.g. --sections core,compile --budget-s 500).
set -euo pipefail
export PYTHONUNBUFFERED=1

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mura-gpu-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
RESULT="${OUT:+$OUT/gpu.json}"
RESULT="${RESULT:-$WORK/gpu.json}"

echo "mura gpu benchmark: $(git rev-parse --short HEAD 2>/dev/null || echo 'no git'), $(date -u +%FT%TZ)" >&2
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader >&2 || true
fi

status=0
"$PYTHON" benchmarks/gpu.py --data "$WORK/data" --out "$RESULT" "$@" >"$WORK/stdout.json" || status=$?
if [[ $status -eq 0 ]]; then
    cat "$WORK/stdout.json"
    echo
    cat "${RESULT%.json}.txt"
else
    echo "gpu.py failed (exit $status); what it measured before that:" >&2
    if [[ -s "$RESULT" ]]; then
        cat "$RESULT"
        "$PYTHON" benchmarks/gpu.py --summary "$RESULT" || true
    fi
    exit "$status"
fi
