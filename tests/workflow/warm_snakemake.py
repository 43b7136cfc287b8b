"""The suite's Snakemake commands of the repository's workflow, each in a fork of a process that
has already imported Snakemake, torch and the package.

Each such command otherwise starts a Python and imports them again: 4-5 s of CPU of the ~6 s
of a dry run on this machine, and the suite runs some fifty. A fork runs Snakemake's own command
line (``snakemake.cli.main``) in the command's folder and environment, its stdout and stderr
into files, and exits with its status: each command is a fresh fork of a process that never ran
one, so nothing of one reaches the next, and its jobs are processes of their own as always.
Commands of another Snakefile or interpreter (a copy of the workflow whose code a test edits)
run as subprocesses: a fork would run the checkout's package, imported before the edit.

Run as a script, this file is that process: it reads one JSON request a line on stdin, forks,
waits and answers with the exit status.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PRELOADED = ("snakemake.cli", "snakemake.utils", "torch", "stn.code_inputs", "stn.experiment", "stn.config")
"""What the parent imports before it forks: Snakemake and what the Snakefile imports."""

_server: subprocess.Popen | None = None


def _serve() -> None:
    """The parent: import, then fork one child a request and answer with its exit status."""
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:  # the child leaves the loop as a process ends: exit functions run, files flush
            gc.freeze()  # nothing to collect at its exit of what the parent imported
            sys.exit(_run_in_child(json.loads(line)))
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


def _run_in_child(request: dict) -> int:
    """Snakemake's command line on ``request["args"]``, as its own process would run it; its exit status."""
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        os.chdir(request["cwd"])
        sys.path[0] = os.getcwd()  # as `python -m snakemake` started there has it
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["snakemake", *request["args"]]
        from snakemake.cli import main

        main(request["args"])  # exits
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    except BaseException:
        import traceback

        traceback.print_exc()
    return 1


def _parent() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        atexit.register(_server.stdin.close)  # the parent ends at the end of its input
    return _server


def run(
    command: Sequence[str], cwd: Path | str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)``, forked from
    the warm process where ``command`` is ``python -m snakemake --snakefile <the checkout's>``."""
    command = list(command)
    ours = command[:5] == [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile")]
    if not ours:
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)
    server = _parent()
    with tempfile.TemporaryDirectory(prefix="warm-snakemake-") as out:
        request = {
            "args": command[3:],
            "cwd": str(cwd),
            "env": dict(os.environ if env is None else env),
            "stdout": str(Path(out) / "stdout"),
            "stderr": str(Path(out) / "stderr"),
        }
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        answer = server.stdout.readline()
        if not answer:
            raise RuntimeError(f"the warm Snakemake process ended (status {server.wait()})")
        returncode = json.loads(answer)["returncode"]
        stdout, stderr = (Path(request[name]).read_text() for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess(command, returncode, stdout, stderr)


if __name__ == "__main__":
    sys.path[0] = str(ROOT)  # not this script's folder: `python -m` puts the working folder first
    _serve()
