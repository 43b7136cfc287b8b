#!/usr/bin/env bash
# Set up the environment when needed, then run the pipeline or the tests.
#   bash run.sh          regenerate every table and figure (snakemake --cores all)
#   bash run.sh test     run the test suite
# Extra arguments go to snakemake (or pytest), e.g. `bash run.sh --configfile config/paper.yaml`.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${STN_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating the virtual environment $VENV" >&2
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian without python3-venv: use virtualenv from PyPI instead
        rm -rf "$VENV"
        "$PYTHON" -m pip install --user --quiet virtualenv 2>/dev/null ||
            "$PYTHON" -m pip install --user --quiet --break-system-packages virtualenv  # PEP 668 systems
        "$PYTHON" -m virtualenv --quiet "$VENV"
    fi
fi
stamp="$VENV/.stn-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo ">> installing the project and its dependencies into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[test]'
    touch "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"

case "${1:-all}" in
    test) shift; exec python -m pytest "$@" ;;
    all) [ $# -gt 0 ] && shift; exec snakemake --cores all "$@" ;;
    *) exec snakemake --cores all "$@" ;;
esac
