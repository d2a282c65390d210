#!/usr/bin/env bash
# Nightly regeneration of the catalogue into a dated release.
#
#   workflow/scripts/nightly.sh [extra snakemake arguments, e.g. --configfile my.yaml]
#
# One night at a time (flock on results/.nightly.lock). A run already going in the
# same directory (a manual snakemake, or a night started another way) is waited
# for, up to GALCAT_NIGHTLY_WAIT_S seconds (default 1800), and the night then
# refuses (exit 75) rather than run beside it. Only when no snakemake process is
# working in the directory is a lock left in .snakemake by a killed run cleared.
# The workflow then runs with the nightly profile and writes
# results/{survey}/releases/$GALCAT_RELEASE (default: today's date).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
export PATH="$repo/.venv/bin:$PATH"
release="${GALCAT_RELEASE:-$(date +%F)}"
wait_s="${GALCAT_NIGHTLY_WAIT_S:-1800}"
workdir="$PWD"
for ((i = 1; i <= $#; i++)); do  # honour --directory for the lock file
  if [[ "${!i}" == "--directory" || "${!i}" == "-d" ]]; then j=$((i + 1)); workdir="${!j}"; fi
done
mkdir -p "$workdir/results"
workdir="$(cd "$workdir" && pwd -P)"
exec 9>"$workdir/results/.nightly.lock"
flock -n 9 || { echo "nightly: another night holds $workdir/results/.nightly.lock" >&2; exit 75; }

# A snakemake process (other than this script's) whose working directory, or whose
# --directory, is ours: its pid and command line.
other_run() {
  local pid cwd cmd
  for pid in $(pgrep -f snakemake || true); do
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || continue
    [[ "$cmd" == *nightly.sh* || "$cmd" != *snakemake* ]] && continue
    cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null)" || continue
    if [[ "$cwd" == "$workdir" || "$cmd" == *"--directory $workdir"* \
          || "$cmd" == *"-d $workdir"* ]]; then
      echo "$pid: $cmd"
      return 0
    fi
  done
  return 1
}

waited=0
while running="$(other_run)"; do
  if ((waited >= wait_s)); then
    echo "nightly: a snakemake run is going in $workdir (pid ${running%%:*}); waited" \
      "${waited} s, refusing to run beside it. Rerun the night when it has finished" \
      "(GALCAT_NIGHTLY_WAIT_S sets the wait)." >&2
    exit 75
  fi
  ((waited == 0)) && echo "nightly: waiting for the run going in $workdir (pid ${running%%:*})" >&2
  sleep 10
  waited=$((waited + 10))
done

# Nothing else works here, and other nights are held off by flock: a lock in
# .snakemake is a killed run's, and clearing it is safe.
if [[ -n "$(ls -A "$workdir/.snakemake/locks" 2>/dev/null)" ]]; then
  echo "nightly: clearing the lock a killed run left in $workdir/.snakemake/locks" >&2
  snakemake --snakefile "$repo/Snakefile" --workflow-profile "$repo/profiles/nightly" \
    --unlock "$@" >/dev/null
fi
exec snakemake --snakefile "$repo/Snakefile" --workflow-profile "$repo/profiles/nightly" \
  --config release="$release" "$@"
