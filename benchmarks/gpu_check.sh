#!/usr/bin/env bash
# One GPU check (issue 22): every GPU figure in one command, printed as ONE JSON line on stdout.
#   bash benchmarks/gpu_check.sh             # needs CUDA; at most about 8 minutes on one GPU
#   bash benchmarks/gpu_check.sh --dry-run   # CPU, tiny model and sizes: the same code in seconds
# Installs nothing: it runs with the project's virtualenv (.venv) if there is one, else $PYTHON or python3.
# Exit status: 0 all checks passed, 1 a check failed, 2 no CUDA device. See benchmarks/gpu_check.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    if [[ -x "$here/../.venv/bin/python" ]]; then py="$here/../.venv/bin/python"; else py=python3; fi
fi
exec "$py" "$here/gpu_check.py" "$@"
