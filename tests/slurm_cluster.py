"""A throwaway single-node SLURM cluster on localhost, for tests.

``LocalSlurm().start(workdir)`` starts, by hand and without systemd:

* ``munged`` with its own key, socket, pid and log file,
* a MariaDB server on a fresh data directory (unix socket for setup, 127.0.0.1 on a
  free port for slurmdbd),
* ``slurmdbd`` (accounting), then registers cluster, account and user with
  ``sacctmgr -i``,
* ``slurmctld`` and ``slurmd`` (node ``localhost``, partition ``debug``),

and waits until the node is idle and ``sacct`` answers. Clients (``sbatch``,
``sacct``, ``snakemake --executor slurm``) only need ``SLURM_CONF`` pointing at the
generated ``slurm.conf``; :meth:`LocalSlurm.env` returns a ready environment.
``stop()`` cancels remaining jobs and terminates the daemons by the PIDs recorded at
start, waiting for each of them.

Needs root and the Debian packages installed by ``.ci/install-slurm.sh``; check
:meth:`LocalSlurm.available` first.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.slurm_conf import SlurmNode, slurm_conf, slurmdbd_conf

__all__ = ["LocalSlurm", "SlurmStartError"]

# Debian keeps daemons in /usr/sbin, which is not always on PATH (e.g. CI shells).
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
)

# name -> alternatives; the first one found is used
# client commands wrapped in <workdir>/bin (see LocalSlurm._write_wrappers)
_CLIENTS = (
    "sbatch",
    "srun",
    "salloc",
    "sacct",
    "sacctmgr",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
    "sshare",
    "sstat",
)

_REQUIRED_BINARIES: dict[str, tuple[str, ...]] = {
    "munged": ("munged",),
    "mariadbd": ("mariadbd", "mysqld"),
    "mariadb-install-db": ("mariadb-install-db", "mysql_install_db"),
    "mariadb": ("mariadb", "mysql"),
    "slurmdbd": ("slurmdbd",),
    "slurmctld": ("slurmctld",),
    "slurmd": ("slurmd",),
    "sacctmgr": ("sacctmgr",),
    "sbatch": ("sbatch",),
    "sacct": ("sacct",),
    "squeue": ("squeue",),
    "sinfo": ("sinfo",),
    "scontrol": ("scontrol",),
    "scancel": ("scancel",),
}


class SlurmStartError(RuntimeError):
    """Raised when a daemon of the local cluster fails to start or become ready."""


def _which(names: Sequence[str]) -> str | None:
    for name in names:
        found = shutil.which(name, path=_SEARCH_PATH)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _total_memory_mib() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("MemTotal not found in /proc/meminfo")


@dataclass
class _Daemon:
    name: str
    proc: subprocess.Popen
    logs: tuple[Path, ...]


class LocalSlurm:
    """A single-node SLURM cluster (with slurmdbd accounting) run from ``workdir``."""

    cluster = "stntest"
    account = "stntest"
    partition = "debug"
    node = "localhost"

    def __init__(self, *, start_timeout: float = 60.0) -> None:
        self.start_timeout = start_timeout
        self.workdir: Path | None = None
        self.slurm_conf: Path | None = None
        self.cpus = len(os.sched_getaffinity(0))
        total = _total_memory_mib()
        # leave some memory for the OS; SLURM will not hand it out
        self.real_memory_mib = max(256, total - max(512, total // 10))
        self._daemons: list[_Daemon] = []
        self._bin: dict[str, str] = {}
        self._sockdir: Path | None = None
        #: seconds spent in each start phase (for diagnostics)
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ checks
    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") when a cluster can be started here, else (False, reason)."""
        if os.name != "posix" or not hasattr(os, "geteuid"):
            return False, "local SLURM cluster needs Linux"
        if os.geteuid() != 0:
            return False, "local SLURM cluster needs root (daemons run as SlurmUser=root)"
        missing = [name for name, alts in _REQUIRED_BINARIES.items() if not _which(alts)]
        if missing:
            return False, (
                "SLURM/munge/MariaDB binaries missing: "
                + ", ".join(missing)
                + " (run .ci/install-slurm.sh as root)"
            )
        return True, ""

    # ------------------------------------------------------------- public API
    @property
    def bindir(self) -> Path:
        """Directory with wrappers of the SLURM clients that pin ``SLURM_CONF``."""
        return self._path("bin")

    @property
    def running(self) -> bool:
        return any(d.proc.poll() is None for d in self._daemons)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for SLURM clients: ``base`` (default os.environ) without any
        inherited ``SLURM_*`` variables, plus ``SLURM_CONF`` and :attr:`bindir` first
        on PATH."""
        if self.slurm_conf is None:
            raise RuntimeError("cluster not started")
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.slurm_conf)
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p]
        path = [str(self.bindir), *(p for p in path if p != str(self.bindir))]
        path += [p for p in ("/usr/bin", "/usr/sbin") if p not in path]
        env["PATH"] = os.pathsep.join(path)
        return env

    def run(
        self, args: Sequence[str], *, check: bool = True, timeout: float = 30.0, **kwargs
    ) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command against this cluster (text output captured)."""
        kwargs.setdefault("env", self.env())
        return subprocess.run(
            list(args), capture_output=True, text=True, check=check, timeout=timeout, **kwargs
        )

    def start(self, workdir: Path) -> dict[str, str]:
        """Start munged, MariaDB, slurmdbd, slurmctld and slurmd below ``workdir``.

        Returns the client environment (see :meth:`env`). On failure everything
        started so far is stopped again and :class:`SlurmStartError` is raised with
        the tail of the relevant log.
        """
        ok, reason = self.available()
        if not ok:
            raise SlurmStartError(reason)
        if self._daemons:
            raise RuntimeError("cluster already started")
        self._bin = {name: _which(alts) for name, alts in _REQUIRED_BINARIES.items()}  # type: ignore[misc]
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # unix socket paths are limited to ~108 bytes: keep sockets in a short dir
        self._sockdir = Path(tempfile.mkdtemp(prefix="lslurm-", dir="/tmp"))
        # munged requires the socket directory to be searchable by everyone
        os.chmod(self._sockdir, 0o755)
        self._deadline = time.monotonic() + self.start_timeout
        atexit.register(self.stop)  # safety net outside of fixtures/context managers
        try:
            for phase in (
                self._start_munge,
                self._start_mariadb,
                self._write_configs,
                self._start_slurmdbd,
                self._register_accounts,
                self._start_slurmctld,
                self._start_slurmd,
                self._wait_ready,
            ):
                t0 = time.monotonic()
                phase()
                self.timings[phase.__name__.lstrip("_")] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self.env()

    def stop(self, timeout: float = 20.0) -> None:
        """Cancel jobs, then terminate all daemons (reverse start order) and wait."""
        if self.slurm_conf is not None and any(
            d.name == "slurmctld" and d.proc.poll() is None for d in self._daemons
        ):
            with contextlib.suppress(Exception):
                self._cancel_all_jobs()
        for daemon in reversed(self._daemons):
            self._terminate(daemon, timeout)
        self._daemons.clear()
        self._kill_strays()
        atexit.unregister(self.stop)
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def _kill_strays(self) -> None:
        """SIGKILL job processes of this cluster that outlived the daemons.

        slurmd double-forks a slurmstepd per job step, which forks the job's
        processes; normally they are gone once the jobs are cancelled, but a job that
        ignores signals (or a stepd that lost its slurmd) may survive. They are
        recognised by the SLURM_CONF they inherited from our slurmd together with
        SLURM_JOB_ID (job processes) or their name (slurmstepd)."""
        if self.slurm_conf is None:
            return
        marker = f"SLURM_CONF={self.slurm_conf}".encode()
        spared = {os.getpid(), os.getppid(), 1}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in spared:
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                if marker not in environ:
                    continue
                is_job = any(v.startswith(b"SLURM_JOB_ID=") for v in environ)
                if is_job or (entry / "comm").read_text().strip() == "slurmstepd":
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue

    def __enter__(self) -> LocalSlurm:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --------------------------------------------------------------- helpers
    def _path(self, *parts: str) -> Path:
        assert self.workdir is not None
        return self.workdir.joinpath(*parts)

    def _remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def _spawn(self, name: str, args: Sequence[str], logs: Sequence[Path]) -> _Daemon:
        out = self._path("log", f"{name}.out")
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        if self.slurm_conf is not None:
            env["SLURM_CONF"] = str(self.slurm_conf)
        with open(out, "ab") as fh:
            proc = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,  # keep Ctrl-C of the test runner away
            )
        daemon = _Daemon(name, proc, (*logs, out))
        self._daemons.append(daemon)
        return daemon

    def _fail(self, daemon: _Daemon | None, what: str) -> SlurmStartError:
        parts = [what]
        if daemon is not None:
            rc = daemon.proc.poll()
            parts[0] += f" ({daemon.name} {'exited with ' + str(rc) if rc is not None else 'running'})"
            for log in daemon.logs:
                if log.exists():
                    parts.append(f"--- tail of {log} ---\n{_tail(log)}")
        return SlurmStartError("\n".join(parts))

    def _wait_for(self, daemon: _Daemon | None, what: str, predicate, interval: float = 0.1):
        while True:
            if daemon is not None and daemon.proc.poll() is not None:
                raise self._fail(daemon, f"{what}: daemon died")
            result = predicate()
            if result:
                return result
            if self._remaining() <= 0:
                raise self._fail(daemon, f"{what}: timed out after {self.start_timeout:.0f} s")
            time.sleep(interval)

    def _quiet_run(self, args: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(list(args), capture_output=True, text=True, timeout=10, **kwargs)
        except (subprocess.TimeoutExpired, OSError):
            return None

    def _checked_run(self, daemon: _Daemon | None, args: Sequence[str], **kwargs) -> str:
        res = self._quiet_run(args, **kwargs)
        if res is None or res.returncode != 0:
            detail = "timed out" if res is None else f"rc={res.returncode}\n{res.stdout}{res.stderr}"
            raise self._fail(daemon, f"command {' '.join(args)} failed: {detail}")
        return res.stdout

    @staticmethod
    def _terminate(daemon: _Daemon, timeout: float) -> None:
        proc = daemon.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)
        else:
            proc.wait()

    # ----------------------------------------------------------------- munge
    def _start_munge(self) -> None:
        d = self._path("munge")
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        key = d / "munge.key"
        if not key.exists():
            # munged insists on a key owned by its user and not readable by others
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(1024))
        self.munge_socket = self._sockdir / "munge.socket"
        log = d / "munged.log"
        daemon = self._spawn(
            "munged",
            [
                self._bin["munged"],
                "--foreground",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={d / 'munged.pid'}",
                f"--log-file={log}",
                f"--seed-file={d / 'munged.seed'}",
            ],
            [log],
        )
        self._wait_for(daemon, "munged socket", self.munge_socket.exists)

    # --------------------------------------------------------------- mariadb
    def _mysql(self, daemon: _Daemon, sql: str) -> str:
        return self._checked_run(
            daemon,
            [
                self._bin["mariadb"],
                "--no-defaults",
                f"--socket={self.mysql_socket}",
                "--user=root",
                "--batch",
                "-e",
                sql,
            ],
        )

    def _install_mariadb(self, datadir: Path, log: Path) -> None:
        """A fresh MariaDB data directory in ``datadir``, mariadb-install-db's output in ``log``."""
        with open(log, "wb") as fh:
            # own session: on timeout kill the whole group (the script spawns
            # a bootstrap mariadbd)
            proc = subprocess.Popen(
                [
                    self._bin["mariadb-install-db"],
                    "--no-defaults",
                    f"--datadir={datadir}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    "--skip-name-resolve",
                    "--innodb-use-native-aio=0",
                ],
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=max(1.0, self._remaining()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = None
        if rc != 0:
            status = "timed out" if rc is None else f"rc={rc}"
            raise SlurmStartError(
                f"mariadb-install-db failed ({status})\n--- tail of {log} ---\n{_tail(log)}"
            )

    def _mariadb_answers(self) -> bool:
        """Whether MariaDB answers a query on its socket."""
        if not self.mysql_socket.exists():
            return False
        res = self._quiet_run(
            [
                self._bin["mariadb"],
                "--no-defaults",
                f"--socket={self.mysql_socket}",
                "--user=root",
                "-e",
                "SELECT 1",
            ]
        )
        return res is not None and res.returncode == 0

    def _start_mariadb(self) -> None:
        d = self._path("mariadb")
        datadir = d / "data"
        d.mkdir(parents=True, exist_ok=True)
        self.mysql_socket = self._sockdir / "mysqld.sock"
        self.mysql_port = _free_port()
        if not (datadir / "mysql").exists():
            self._install_mariadb(datadir, d / "install-db.log")
        log = d / "mariadbd.err"
        daemon = self._spawn(
            "mariadbd",
            [
                self._bin["mariadbd"],
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={self.mysql_socket}",
                f"--pid-file={d / 'mariadbd.pid'}",
                f"--log-error={log}",
                f"--tmpdir={d}",
                "--user=root",
                "--bind-address=127.0.0.1",
                f"--port={self.mysql_port}",
                "--skip-name-resolve",
                "--skip-log-bin",
                # a test database: speed over durability
                "--innodb-use-native-aio=0",
                "--innodb-buffer-pool-size=256M",
                "--innodb-log-file-size=64M",
                "--innodb-lock-wait-timeout=900",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
            ],
            [log],
        )

        self._wait_for(daemon, "mariadbd ready", self._mariadb_answers)
        self.db_user = "slurm"
        self.db_pass = secrets.token_hex(12)
        self._mysql(
            daemon,
            "CREATE DATABASE IF NOT EXISTS slurm_acct_db;"
            + "".join(
                f"CREATE OR REPLACE USER '{self.db_user}'@'{host}' "
                f"IDENTIFIED BY '{self.db_pass}';"
                f"GRANT ALL ON slurm_acct_db.* TO '{self.db_user}'@'{host}';"
                for host in ("127.0.0.1", "localhost")
            ),
        )

    # --------------------------------------------------------------- configs
    def _write_configs(self) -> None:
        etc = self._path("etc")
        for sub in ("etc", "state", "spool", "log", "run"):
            self._path(sub).mkdir(parents=True, exist_ok=True)
        self.dbd_port = _free_port()
        self.ctld_port = _free_port()
        self.slurmd_port = _free_port()
        dbd_conf = etc / "slurmdbd.conf"
        dbd_conf.write_text(
            slurmdbd_conf(
                munge_socket=self.munge_socket,
                port=self.dbd_port,
                log=self._path("log", "slurmdbd.log"),
                pid=self._path("run", "slurmdbd.pid"),
                mysql_port=self.mysql_port,
                db_user=self.db_user,
                db_pass=self.db_pass,
            )
        )
        # slurmdbd refuses a config readable by others (it holds the DB password)
        os.chmod(dbd_conf, 0o600)
        conf = etc / "slurm.conf"
        conf.write_text(
            slurm_conf(
                SlurmNode(self.cluster, self.node, self.partition, self.cpus, self.real_memory_mib),
                munge_socket=self.munge_socket,
                ports=(self.ctld_port, self.slurmd_port, self.dbd_port),
                path=self._path,
            )
        )
        conf.chmod(0o644)
        self.slurm_conf = conf
        self._write_wrappers()

    def _write_wrappers(self) -> None:
        # snakemake-executor-plugin-slurm-jobstep runs the in-job `srun` with every
        # SLURM_* variable except a few job ids removed, SLURM_CONF included; srun then
        # looks for /etc/slurm/slurm.conf or DNS SRV records and dies. These wrappers
        # (first on PATH, which sbatch --export=ALL hands to the job) put it back.
        self.bindir.mkdir(parents=True, exist_ok=True)
        for name in _CLIENTS:
            real = _which((name,))
            if real is None:
                continue
            wrapper = self.bindir / name
            wrapper.write_text(
                "#!/bin/sh\n"
                f"SLURM_CONF={shlex.quote(str(self.slurm_conf))}\n"
                "export SLURM_CONF\n"
                f'exec {shlex.quote(real)} "$@"\n'
            )
            wrapper.chmod(0o755)

    # ----------------------------------------------------------------- slurm
    def _start_slurmdbd(self) -> None:
        log = self._path("log", "slurmdbd.log")
        daemon = self._spawn("slurmdbd", [self._bin["slurmdbd"], "-D"], [log])
        sacctmgr = self._bin["sacctmgr"]

        def ready() -> bool:
            res = self._quiet_run([sacctmgr, "-n", "-P", "list", "cluster"], env=self.env())
            return res is not None and res.returncode == 0

        self._wait_for(daemon, "slurmdbd ready", ready, interval=0.2)
        self._dbd = daemon

    def _register_accounts(self) -> None:
        sacctmgr = self._bin["sacctmgr"]
        user = "root"
        for args in (
            ["add", "cluster", self.cluster],
            [
                "add",
                "account",
                self.account,
                f"Cluster={self.cluster}",
                "Description=test account",
                "Organization=test",
            ],
            ["add", "user", user, f"Account={self.account}", f"Cluster={self.cluster}"],
            ["modify", "user", user, "set", f"DefaultAccount={self.account}"],
        ):
            res = self._quiet_run([sacctmgr, "-i", *args], env=self.env())
            # sacctmgr exits 1 with "Nothing new added" when it already exists
            if res is None or (res.returncode != 0 and "Nothing" not in res.stdout + res.stderr):
                detail = "timed out" if res is None else f"{res.stdout}{res.stderr}"
                raise self._fail(self._dbd, f"sacctmgr {' '.join(args)} failed: {detail}")

    def _start_slurmctld(self) -> None:
        log = self._path("log", "slurmctld.log")
        daemon = self._spawn(
            "slurmctld", [self._bin["slurmctld"], "-D", "-i", "-f", str(self.slurm_conf)], [log]
        )
        scontrol = self._bin["scontrol"]

        def ready() -> bool:
            res = self._quiet_run([scontrol, "ping"], env=self.env())
            return res is not None and res.returncode == 0 and "UP" in res.stdout

        self._wait_for(daemon, "slurmctld ready", ready, interval=0.2)
        self._ctld = daemon

    def _start_slurmd(self) -> None:
        log = self._path("log", "slurmd.log")
        self._slurmd = self._spawn(
            "slurmd",
            [self._bin["slurmd"], "-D", "-N", self.node, "-f", str(self.slurm_conf)],
            [log],
        )

    def _wait_ready(self) -> None:
        sinfo = self._bin["sinfo"]
        sacct = self._bin["sacct"]

        def idle() -> bool:
            if self._ctld.proc.poll() is not None:
                raise self._fail(self._ctld, "slurmctld died")
            res = self._quiet_run([sinfo, "-h", "-N", "-n", self.node, "-o", "%T"], env=self.env())
            return res is not None and res.returncode == 0 and res.stdout.strip() == "idle"

        self._wait_for(self._slurmd, "node idle in sinfo", idle, interval=0.2)

        def sacct_ok() -> bool:
            res = self._quiet_run([sacct, "-n", "-X", "-a"], env=self.env())
            return res is not None and res.returncode == 0

        self._wait_for(self._dbd, "sacct answering", sacct_ok, interval=0.2)

    def _cancel_all_jobs(self) -> None:
        self._quiet_run([self._bin["scancel"], "--full", "--user=root"], env=self.env())
        squeue = self._bin["squeue"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            res = self._quiet_run([squeue, "-h", "-o", "%i"], env=self.env())
            if res is None or res.returncode != 0 or not res.stdout.strip():
                return
            time.sleep(0.3)
