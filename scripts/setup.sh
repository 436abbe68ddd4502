#!/usr/bin/env bash
# Set up everything tensormagic needs in ./.venv (idempotent; fast when already done).
#   scripts/setup.sh          the Python environment (torch, Jupyter, test tools) and Debian's
#                             graphviz (its dot lays out %%autograd's graph pictures)
#   scripts/setup.sh browser  also Debian's Chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.tensormagic-setup
want="$(cat requirements-dev.txt pyproject.toml setup.py tensormagic/engine/tensorinfo/statistics/_fused.c tensormagic/engine/tensorinfo/statistics/fused_*.h | sha1sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing torch 2.13.0 (CPU), Jupyter and test tools into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
    echo "$want" > "$stamp"
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v dot >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Debian's graphviz (dot draws the autograd graph)"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq graphviz >/dev/null
    else
        echo "setup: no apt-get here: install Graphviz yourself (brew install graphviz, conda install graphviz) to see graphs drawn"
    fi
fi
if [ "${1:-}" = "browser" ] && ! command -v chromium >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser tests"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
