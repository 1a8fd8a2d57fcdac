#!/usr/bin/env bash
# Brings up a one-node Slurm cluster on this machine, for hwrun's Slurm integration tests.
#
#   sudo scripts/slurm/up.sh        # install (Debian/Ubuntu) and start munge, slurmctld, slurmd
#
# The node is `localhost` with the machine's real CPU count and memory; scheduling is
# select/cons_tres, processes are tracked with proctrack/linuxproc and no cgroups are used, so it
# runs in containers too. Daemon state and logs live in $HWRUN_SLURM_STATE (default
# /tmp/hwrun-slurm). Idempotent: when the cluster already answers, it exits 0 at once.
# Exits non-zero with the reason when Slurm cannot be brought up.
set -euo pipefail

STATE=${HWRUN_SLURM_STATE:-/tmp/hwrun-slurm}
CONF=/etc/slurm/slurm.conf

fail() {
    echo "slurm/up.sh: $*" >&2
    exit 1
}

cluster_answers() {
    command -v sinfo >/dev/null 2>&1 || return 1
    timeout 5 sinfo --noheader --responding --states=idle,mixed,allocated,completing -o '%N' 2>/dev/null | grep -q localhost
}

if cluster_answers; then
    echo "slurm/up.sh: the one-node cluster is already up"
    exit 0
fi

[ "$(id -u)" = 0 ] || fail "must run as root (it installs packages and starts daemons as root)"

missing=()
for tool in slurmctld slurmd munged sbatch; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and no apt-get to install slurmctld, slurmd, munge, slurm-client"
    echo "slurm/up.sh: installing slurmctld slurmd munge slurm-client"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || fail "apt-get update failed"
    # policy-rc.d keeps the packages from starting their daemons with the stock configuration.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends slurmctld slurmd munge slurm-client >/dev/null \
        || { rm -f /usr/sbin/policy-rc.d; fail "apt-get install slurmctld slurmd munge slurm-client failed"; }
    rm -f /usr/sbin/policy-rc.d
fi

mkdir -p "$STATE/ctld" "$STATE/d" /etc/slurm

# munge: a key of its own, the daemon as the munge user.
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    pkill_pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    [ -n "$pkill_pid" ] && kill "$pkill_pid" 2>/dev/null || true
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null 2>&1 || fail "munge does not answer (see /var/log/munge/munged.log)"
fi

cpus=$(nproc --all)
# slurmd refuses a node with more memory configured than it finds; leave it some headroom.
mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)

cat >"$CONF.new" <<CONF
# Written by hwrun's scripts/slurm/up.sh: a one-node test cluster.
ClusterName=hwrun
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
MpiDefault=none
# Jobs that ask for no memory get 1 GB per CPU, not the whole node.
DefMemPerCPU=1024
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
# Finished jobs stay visible to squeue for 10 minutes (there is no accounting database for sacct).
MinJobAge=600
# Short scheduler intervals: test jobs take a second, not an hour.
SchedulerParameters=sched_interval=1,defer_batch=0
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF.new" "$CONF"
# Some Slurm versions insist on a cgroup.conf even with cgroups unused.
[ -e /etc/slurm/cgroup.conf ] || printf 'CgroupPlugin=autodetect\nIgnoreSystemd=yes\n' >/etc/slurm/cgroup.conf

stop_pidfile() {
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
}
stop_pidfile "$STATE/slurmd.pid"
stop_pidfile "$STATE/slurmctld.pid"

slurmctld -i || fail "slurmctld did not start: $(tail -5 "$STATE/slurmctld.log" 2>/dev/null)"
slurmd || fail "slurmd did not start: $(tail -5 "$STATE/slurmd.log" 2>/dev/null)"

for _ in $(seq 100); do
    if cluster_answers; then
        echo "slurm/up.sh: one-node cluster up ($cpus CPUs, ${mem_mb} MB; state in $STATE)"
        exit 0
    fi
    # A node that registered DOWN (e.g. after a restart) is put back into service.
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    sleep 0.2
done
fail "the cluster did not come up within 20 s: $(sinfo 2>&1 | tail -3); slurmctld: $(tail -3 "$STATE/slurmctld.log" 2>/dev/null); slurmd: $(tail -3 "$STATE/slurmd.log" 2>/dev/null)"
