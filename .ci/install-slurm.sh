#!/usr/bin/env bash
# Install a single-node SLURM stack (slurmctld, slurmd, slurmdbd, munge, MariaDB)
# from Debian packages so that tests/slurm_cluster.py can start a throwaway cluster.
#
# Idempotent: does nothing when all binaries are already present. Needs root and
# apt-get; otherwise it only prints why it skipped (the slurm tests then skip too).
# No daemon is started here and none is left enabled: tests start them by hand.
set -euo pipefail

# Debian puts the daemons in /usr/sbin, which a CI shell's PATH may lack.
search_path="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
have() { PATH="$search_path" command -v "$1" >/dev/null 2>&1; }

required=(slurmctld slurmd slurmdbd munged sbatch srun sacct sacctmgr sinfo squeue scontrol
    mariadb-install-db mariadb)
missing=()
for bin in "${required[@]}"; do
    have "$bin" || missing+=("$bin")
done
have mariadbd || have mysqld || missing+=(mariadbd)

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-slurm: all SLURM/munge/MariaDB binaries present, nothing to do"
    exit 0
fi
echo "install-slurm: missing: ${missing[*]}"

# shellcheck source=.ci/apt-guard.sh
source "$(dirname "$0")/apt-guard.sh"
apt_guard install-slurm "slurm tests"
# Do not let package postinst scripts start daemons (no systemd here; tests start them).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [[ $created_policy -eq 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

start=$(date +%s)
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    slurm-wlm slurm-client slurmdbd munge mariadb-server
echo "install-slurm: installed in $(($(date +%s) - start)) s"
PATH="$search_path" slurmctld -V
