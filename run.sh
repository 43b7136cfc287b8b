#!/usr/bin/env bash
# Set up the environment when needed, then run the pipeline or the tests.
#   bash run.sh          regenerate every table and figure (snakemake --cores all), then the
#                        browsable report results/report.html
#   bash run.sh test     run the test suite
# Only one `bash run.sh` of a directory runs at a time; after a crash (kill -9, power loss) the
# next one removes the stale Snakemake lock itself.
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
    # Without an NVIDIA GPU, PyTorch's CPU build (about 200 MB) instead of PyPI's default, which
    # brings several GB of CUDA libraries; STN_TORCH=default keeps the default build.
    if [ "${STN_TORCH:-auto}" = auto ] && ! command -v nvidia-smi >/dev/null 2>&1; then
        cpu_torch=$("$VENV/bin/python" tools/cpu_torch.py || true)
        if [ -n "$cpu_torch" ]; then
            echo ">> no NVIDIA GPU: installing PyTorch's CPU build ($cpu_torch)" >&2
            # torch alone from that index (its dependencies come from the usual ones next)
            "$VENV/bin/python" -m pip install --quiet --no-deps --retries 1 "$cpu_torch" \
                --extra-index-url https://download.pytorch.org/whl/cpu
        fi
    fi
    "$VENV/bin/python" -m pip install --quiet -e '.[test]'
    touch "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"

case "${1:-all}" in
    # Tests work in temporary directories: no lock. They run on one pytest-xdist worker per core
    # (STN_TEST_WORKERS=0: in this process); tests that share a local SLURM cluster stay on one.
    test) shift; exec python -m pytest -n "${STN_TEST_WORKERS:-auto}" --dist loadgroup "$@" ;;
    all) if [ $# -gt 0 ]; then shift; fi ;;
esac

# One run of this directory at a time. The flock is held by this process, and after `exec` by
# Snakemake and the jobs it starts, so the operating system releases it when they all end, even
# after kill -9 or a power loss. Holding it proves that no other run.sh of this directory is alive,
# so a Snakemake lock left in .snakemake/locks is stale and can be removed safely.
if command -v flock >/dev/null 2>&1; then
    mkdir -p .snakemake
    exec {lock_fd}<>.snakemake/run.sh.lock  # opened without truncating: it holds the owner's pid
    if ! flock -n "$lock_fd"; then
        owner=$(head -n 1 .snakemake/run.sh.lock 2>/dev/null || true)
        echo "run.sh: another run of this directory is active (pid ${owner:-unknown}); nothing was changed." >&2
        echo "run.sh: wait for it to finish, or stop it (kill ${owner:-<pid>}) and run this command again." >&2
        exit 75
    fi
    echo $$ >.snakemake/run.sh.lock  # this pid stays Snakemake's after exec
    if compgen -G ".snakemake/locks/*" >/dev/null; then
        # A Snakemake started by hand (not through run.sh) would hold its lock without our flock.
        here=$(pwd -P)
        for proc in /proc/[0-9]*; do
            pid=${proc#/proc/}
            [ "$pid" = $$ ] && continue
            [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$here" ] || continue
            if tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -q snakemake; then
                echo "run.sh: Snakemake (pid $pid) is running in this directory outside run.sh;" \
                    "its lock was left alone. Wait for it to finish and run this command again." >&2
                exit 75
            fi
        done
        if ! snakemake --unlock "$@" >/dev/null 2>&1; then
            echo "run.sh: could not remove the stale Snakemake lock; run: snakemake --unlock $*" >&2
            exit 1
        fi
        echo ">> removed a stale Snakemake lock left by an interrupted run (no other run of this directory is active)" >&2
    fi
fi
snakemake --cores all "$@"
# then the browsable report of every table and figure, unless the arguments ask for no run
for arg in "$@"; do
    case "$arg" in
        -n | --dry-run | --dryrun | --report* | --unlock | --lint* | -h | --help | --list-* | -S | --summary \
            | --detailed-summary | --dag | --rulegraph | --filegraph | --touch | -t | --cleanup-metadata | --delete-*)
            exit 0 ;;
    esac
done
echo ">> writing results/report.html (every table and figure with its caption)" >&2
exec snakemake --report results/report.html "$@"
