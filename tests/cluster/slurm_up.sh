#!/usr/bin/env bash
# Start a real, single-node SLURM on this machine for the cluster tests.
#
#   tests/cluster/slurm_up.sh        # idempotent; needs root (CI runs as root)
#   tests/cluster/slurm_down.sh      # stops exactly what this script started
#
# What it does:
#   * installs slurmctld, slurmd, slurm-client and munge with apt-get if missing;
#   * writes /etc/slurm/slurm.conf and /etc/slurm/gres.conf for one node,
#     `localhost`, with the machine's CPUs and a bit less than its memory, two
#     partitions `cpu` (default) and `gpu`, and one fake GPU (gres File=/dev/null)
#     so that `--gpus=1` / `--gres=gpu:1` jobs are scheduled and get gres/gpu:1;
#   * cgroup-free settings that work in a container (proctrack/linuxproc,
#     task/none, no accounting);
#   * starts munged, slurmctld and slurmd (`-N localhost`) and writes the PIDs of
#     the daemons *it* started to $STATE_DIR/pids (one "name pid" a line);
#   * waits until `sinfo` shows the node idle (resumes it if down/drained).
#
# The config must live at /etc/slurm/slurm.conf: a custom SLURM_CONF is lost
# inside job steps. If a slurm.conf that this script did not write is there, it
# is moved aside to slurm.conf.galcat-bak (and put back by slurm_down.sh).
set -euo pipefail

STATE_DIR=${GALCAT_SLURM_STATE_DIR:-/run/galcat-slurm}
CONF_DIR=/etc/slurm
MARKER="# written by galcat tests/cluster/slurm_up.sh"
WAIT_S=${GALCAT_SLURM_WAIT_S:-60}

log() { echo "slurm_up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"

node_state() {
    # prints e.g. "idle", "down*", "drained", "mixed"; empty if slurmctld does not answer
    timeout 10 sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -1 || true
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# PIDs of live (not zombie) processes called $1: a daemon's exited intermediate
# fork can linger as a zombie when PID 1 of a container is slow to reap it
live_pids() { ps -eo pid=,stat=,comm= | awk -v n="$1" '$3 == n && $2 !~ /^Z/ {print $1}'; }

# ---------------------------------------------------------------- fast path
# (only ask sinfo when a slurmctld runs: without one, sinfo retries for ~10 s)
if command -v sinfo >/dev/null 2>&1 && [ -n "$(live_pids slurmctld)" ]; then
    st=$(node_state)
    case "$st" in
        idle | mixed | allocated | completing)
            log "already up (node localhost: $st)"
            exit 0
            ;;
    esac
fi

# ---------------------------------------------------------------- install
need=()
for pair in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client squeue:slurm-client munged:munge; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Package postinst scripts try to start the services; we start them ourselves.
    if ! apt-get install -y -q --no-install-recommends "${need[@]}" >"/tmp/galcat-slurm-apt.log" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update -q >>"/tmp/galcat-slurm-apt.log" 2>&1
        apt-get install -y -q --no-install-recommends "${need[@]}" >>"/tmp/galcat-slurm-apt.log" 2>&1 ||
            { tail -n 20 /tmp/galcat-slurm-apt.log >&2; die "apt-get install ${need[*]} failed"; }
    fi
fi

mkdir -p "$STATE_DIR"
touch "$STATE_DIR/pids"

# ---------------------------------------------------------------- config
# Real topology from slurmd -C; memory a bit below the machine's.
hw=$(slurmd -C 2>/dev/null | head -1)
get() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
cpus=$(get CPUs); sockets=$(get SocketsPerBoard); cores=$(get CoresPerSocket)
threads=$(get ThreadsPerCore); realmem=$(get RealMemory)
[ -n "$cpus" ] || cpus=$(nproc)
[ -n "$realmem" ] || realmem=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
mem=$((realmem * 90 / 100))
topo="CPUs=$cpus"
if [ -n "$sockets" ] && [ -n "$cores" ] && [ -n "$threads" ]; then
    topo="$topo Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
fi

mkdir -p "$CONF_DIR" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
if [ -f "$CONF_DIR/slurm.conf" ] && ! grep -qF "$MARKER" "$CONF_DIR/slurm.conf"; then
    log "moving the existing $CONF_DIR/slurm.conf aside to slurm.conf.galcat-bak"
    mv "$CONF_DIR/slurm.conf" "$CONF_DIR/slurm.conf.galcat-bak"
    [ -f "$CONF_DIR/gres.conf" ] && mv "$CONF_DIR/gres.conf" "$CONF_DIR/gres.conf.galcat-bak"
fi

cat >"$CONF_DIR/slurm.conf" <<EOF
$MARKER
# Single-node test cluster; see tests/cluster/slurm_up.sh. Not for production.
ClusterName=galcat-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# container friendly: no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SlurmdParameters=config_overrides
ReturnToService=2
# keep finished jobs visible to squeue/scontrol for 5 min (the executor's
# squeue status check needs MinJobAge >= 3 x its first status-check delay)
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
NodeName=localhost $topo RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF

cat >"$CONF_DIR/gres.conf" <<EOF
$MARKER
AutoDetect=off
NodeName=localhost Name=gpu File=/dev/null
EOF

# ---------------------------------------------------------------- munge
record() { # name pid: one line per daemon name, the latest
    { grep -v "^$1 " "$STATE_DIR/pids" || true; echo "$1 $2"; } >"$STATE_DIR/pids.new"
    mv "$STATE_DIR/pids.new" "$STATE_DIR/pids"
}
recorded_pid() { awk -v n="$1" '$1 == n {p = $2} END {print p}' "$STATE_DIR/pids"; }

if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating a munge key"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    rm -f /run/munge/munged.pid
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    [ -s /run/munge/munged.pid ] || die "munged did not start (see /var/log/munge/munged.log)"
    record munged "$(cat /run/munge/munged.pid)"
    munge -n </dev/null | unmunge >/dev/null || die "munge does not work"
fi

# ---------------------------------------------------------------- slurm daemons
start_daemon() { # name pidfile cmd...
    local name=$1 pidfile=$2
    shift 2
    local old
    old=$(recorded_pid "$name")
    if pid_alive "$old"; then
        log "$name (pid $old, started earlier by this script) still running; restarting it"
        kill "$old" 2>/dev/null || true
        for _ in $(seq 50); do pid_alive "$old" || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
    log "starting $name"
    "$@" || die "$name failed to start (see $STATE_DIR/$name.log)"
    for _ in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.1; done
    [ -s "$pidfile" ] || die "$name wrote no pid file (see $STATE_DIR/$name.log)"
    local pid
    pid=$(cat "$pidfile")
    record "$name" "$pid"
    sleep 0.3
    pid_alive "$pid" || { tail -n 20 "$STATE_DIR/$name.log" >&2; die "$name exited right after starting"; }
}

# a slurmctld/slurmd that this script did not record: refuse to fight it
for n in slurmctld slurmd; do
    for p in $(live_pids "$n"); do
        grep -q "^$n $p\$" "$STATE_DIR/pids" ||
            die "a $n (pid $p) not started by this script runs, but node localhost is not usable; stop it first"
    done
done

# -c: clean start, no jobs or node state from an earlier run
start_daemon slurmctld "$STATE_DIR/slurmctld.pid" slurmctld -c
start_daemon slurmd "$STATE_DIR/slurmd.pid" slurmd -N localhost

# ---------------------------------------------------------------- wait for idle
deadline=$((SECONDS + WAIT_S))
resumed=0
while :; do
    st=$(node_state)
    case "$st" in
        idle | mixed | allocated) break ;;
        down* | drain* | fail*)
            if [ $resumed -lt 3 ]; then
                log "node localhost is $st; resuming it"
                scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
                resumed=$((resumed + 1))
            fi
            ;;
    esac
    for n in slurmctld slurmd; do
        p=$(recorded_pid "$n")
        pid_alive "$p" || { tail -n 20 "$STATE_DIR/$n.log" >&2; die "$n (pid $p) died"; }
    done
    if [ $SECONDS -ge $deadline ]; then
        log "node state: '${st:-no answer}'"
        scontrol show node localhost >&2 || true
        tail -n 20 "$STATE_DIR/slurmctld.log" "$STATE_DIR/slurmd.log" >&2 || true
        die "node localhost not idle after ${WAIT_S}s"
    fi
    sleep 0.5
done
log "up: node localhost $st; partitions: $(sinfo -h -o '%P' | tr '\n' ' ')(${SECONDS}s)"
