#!/usr/bin/env bash
# rnnkit against Joey NMT 2.3.0 on Multi30k de→en: training and translation speed, memory,
# and (with --quality-minutes 40) quality at equal wall-clock. Prints the ratio table last.
#
#   bench/compare_joeynmt.sh [--rounds 3] [--steps 200] [--decode-steps 1000] [--threads N] [--quality-minutes 40 [--quality-only]]
#                            [--data DIR/multi30k] [--no-write]
#
# Joey NMT goes into its own virtual environment ($JOEY_VENV, default .bench/joeynmt), never
# into rnnkit's: torch 2.13.0 (CPU) first, then joeynmt 2.3.0, importlib_metadata (Joey
# imports it without declaring it) and sentencepiece 0.2.0 (0.2.1+ lacks a method Joey calls).
set -euo pipefail
cd "$(dirname "$0")/.."
JOEY_VENV=${JOEY_VENV:-.bench/joeynmt}
if [ ! -f "$JOEY_VENV/.installed" ]; then
    echo "installing Joey NMT 2.3.0 into $JOEY_VENV ..." >&2
    python3 -m venv "$JOEY_VENV"
    "$JOEY_VENV/bin/pip" install -q torch==2.13.0
    "$JOEY_VENV/bin/pip" install -q joeynmt==2.3.0 importlib_metadata sentencepiece==0.2.0
    touch "$JOEY_VENV/.installed"
fi
make -s .venv/.installed
exec .venv/bin/python bench/compare_joeynmt.py --joey-python "$JOEY_VENV/bin/python" "$@"
