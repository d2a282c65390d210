#!/usr/bin/env bash
# Stop exactly the daemons that tests/cluster/slurm_up.sh started, by the PIDs it
# recorded in $STATE_DIR/pids, newest first (slurmd, slurmctld, munged). Daemons
# it did not start are left alone. Idempotent.
set -uo pipefail

STATE_DIR=${GALCAT_SLURM_STATE_DIR:-/run/galcat-slurm}
PIDS="$STATE_DIR/pids"

log() { echo "slurm_down: $*" >&2; }

if [ ! -s "$PIDS" ]; then
    log "nothing recorded in $PIDS; nothing to stop"
    exit 0
fi

# cancel what is still queued or running, so that slurmd leaves no job processes
if command -v scancel >/dev/null 2>&1 && grep -q '^slurmctld ' "$PIDS"; then
    timeout 10 scancel --full --quiet --state=PENDING >/dev/null 2>&1 || true
    timeout 10 scancel --full --quiet --state=RUNNING >/dev/null 2>&1 || true
fi

# newest first
tac "$PIDS" | while read -r name pid; do
    [ -n "${pid:-}" ] || continue
    if ! kill -0 "$pid" 2>/dev/null; then
        continue
    fi
    # make sure the PID still belongs to that daemon (PIDs get reused)
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    if [ "$comm" != "$name" ]; then
        log "pid $pid is '$comm', not $name; leaving it alone"
        continue
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
done
: >"$PIDS"

# put back a site config that slurm_up.sh moved aside
for f in slurm.conf gres.conf; do
    if [ -f "/etc/slurm/$f.galcat-bak" ]; then
        mv -f "/etc/slurm/$f.galcat-bak" "/etc/slurm/$f"
        log "restored /etc/slurm/$f"
    fi
done
exit 0
