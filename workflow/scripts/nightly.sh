#!/usr/bin/env bash
# Nightly regeneration of the catalogue into a dated release.
#
#   workflow/scripts/nightly.sh [extra snakemake arguments, e.g. --configfile my.yaml]
#
# One night at a time (flock on results/.nightly.lock); the lock a killed night
# left in .snakemake is cleared (safe: flock proves no other night is running),
# then the workflow runs with the nightly profile and writes
# results/{survey}/releases/$GALCAT_RELEASE (default: today's date).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
export PATH="$repo/.venv/bin:$PATH"
release="${GALCAT_RELEASE:-$(date +%F)}"
workdir="$PWD"
for ((i = 1; i <= $#; i++)); do  # honour --directory for the lock file
  if [[ "${!i}" == "--directory" || "${!i}" == "-d" ]]; then j=$((i + 1)); workdir="${!j}"; fi
done
mkdir -p "$workdir/results"
exec 9>"$workdir/results/.nightly.lock"
flock -n 9 || { echo "nightly: another night holds $workdir/results/.nightly.lock" >&2; exit 1; }
snakemake --snakefile "$repo/Snakefile" --workflow-profile "$repo/profiles/nightly" \
  --unlock "$@" >/dev/null
exec snakemake --snakefile "$repo/Snakefile" --workflow-profile "$repo/profiles/nightly" \
  --config release="$release" "$@"
