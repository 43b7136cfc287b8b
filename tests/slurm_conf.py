"""The configuration files of the test cluster (tests.slurm_cluster): ``slurmdbd.conf`` and
``slurm.conf`` for one node on localhost, authenticated by a private munge socket."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SlurmNode:
    """The cluster's single node and partition."""

    cluster: str
    name: str
    partition: str
    cpus: int
    memory_mib: int


def _munge(socket: Path) -> str:
    return f"AuthType=auth/munge\nAuthInfo=socket={socket}\n"


def slurmdbd_conf(
    *, munge_socket: Path, port: int, log: Path, pid: Path, mysql_port: int, db_user: str, db_pass: str
) -> str:
    """slurmdbd on ``port``, storing accounting in MariaDB on 127.0.0.1:``mysql_port``."""
    return _munge(munge_socket) + (
        f"DbdHost=localhost\n"
        f"DbdPort={port}\n"
        "SlurmUser=root\n"
        "DebugLevel=info\n"
        f"LogFile={log}\n"
        f"PidFile={pid}\n"
        "StorageType=accounting_storage/mysql\n"
        "StorageHost=127.0.0.1\n"
        f"StoragePort={mysql_port}\n"
        f"StorageUser={db_user}\n"
        f"StoragePass={db_pass}\n"
        "StorageLoc=slurm_acct_db\n"
    )


def slurm_conf(
    node: SlurmNode, *, munge_socket: Path, ports: tuple[int, int, int], path: Callable[..., Path]
) -> str:
    """slurmctld and slurmd of ``node``; ``ports``: slurmctld's, slurmd's and slurmdbd's;
    ``path(*parts)``: where state, spool, pid and log files go."""
    ctld_port, slurmd_port, dbd_port = ports
    return (
        f"ClusterName={node.cluster}\n"
        f"SlurmctldHost={node.name}\n"
        f"SlurmctldPort={ctld_port}\n"
        f"SlurmdPort={slurmd_port}\n" + _munge(munge_socket) + "CredType=cred/munge\n"
        "SlurmUser=root\n"
        "SlurmdUser=root\n"
        f"StateSaveLocation={path('state')}\n"
        f"SlurmdSpoolDir={path('spool')}\n"
        f"SlurmctldPidFile={path('run', 'slurmctld.pid')}\n"
        f"SlurmdPidFile={path('run', 'slurmd.pid')}\n"
        f"SlurmctldLogFile={path('log', 'slurmctld.log')}\n"
        f"SlurmdLogFile={path('log', 'slurmd.log')}\n"
        "SlurmctldDebug=info\n"
        "SlurmdDebug=info\n"
        "MailProg=/bin/true\n"
        "MpiDefault=none\n"
        "SwitchType=switch/none\n"
        # no cgroups in containers / gVisor
        "ProctrackType=proctrack/linuxproc\n"
        "TaskPlugin=task/none\n"
        "JobAcctGatherType=jobacct_gather/linux\n"
        "JobAcctGatherFrequency=30\n"
        "SchedulerType=sched/backfill\n"
        "SelectType=select/cons_tres\n"
        "SelectTypeParameters=CR_CPU_Memory\n"
        "SlurmdParameters=config_overrides\n"
        "ReturnToService=2\n"
        "AccountingStorageType=accounting_storage/slurmdbd\n"
        "AccountingStorageHost=localhost\n"
        f"AccountingStoragePort={dbd_port}\n"
        # clients talk to slurmdbd with the munge socket given here, not AuthInfo
        f"AccountingStoragePass={munge_socket}\n"
        "AccountingStorageEnforce=associations\n"
        # keep `sbatch --comment` (snakemake: rule_<name>) visible in sacct
        "AccountingStoreFlags=job_comment\n"
        "JobCompType=jobcomp/none\n"
        "InactiveLimit=0\n"
        "KillWait=5\n"
        "MinJobAge=300\n"
        "SlurmctldTimeout=30\n"
        "SlurmdTimeout=60\n"
        f"NodeName={node.name} NodeAddr=127.0.0.1 CPUs={node.cpus} "
        f"RealMemory={node.memory_mib} State=UNKNOWN\n"
        f"PartitionName={node.partition} Nodes={node.name} Default=YES "
        "MaxTime=INFINITE State=UP\n"
    )
