#!/usr/bin/env bash
# Set up harp in ./.venv (idempotent). Usage: scripts/bootstrap.sh [--dev]
# torch is installed first, pinned, so that no later requirement pulls an unpinned CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==${HARP_TORCH_VERSION:-2.13.0}"
extra=""
if [ "${1:-}" = "--dev" ]; then
  extra="[dev]"
  # The tests start real servers and a real browser from Debian packages:
  #   postgresql  the Optuna study on a real PostgreSQL server (tests start their own, on 127.0.0.1)
  #   chromium    headless browser tests of the report page and the upload page
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    if command -v apt-get >/dev/null 2>&1; then
      echo "installing ${missing[*]} (Debian packages the tests use)"
      $sudo_cmd apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "bootstrap: ${missing[*]} missing and no apt-get here; install them, or their tests fail saying so" >&2
    fi
  fi
fi
.venv/bin/python -m pip install -q -e ".${extra}"
echo "harp installed in .venv ($(.venv/bin/python -c 'import torch, ray; print("torch", torch.__version__, "ray", ray.__version__)'))"
