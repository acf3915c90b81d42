#!/usr/bin/env bash
# Data-parallel training on this machine: N ranks under mpirun, one per core.
#
#   scripts/train-local.sh N [train options...]
#
# Builds the release binary if needed (HEADLINE_TRAINER names another
# binary). With more ranks than cores the ranks share cores
# (--oversubscribe), which is correct but slower.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
    echo "usage: scripts/train-local.sh N [train options...]" >&2
    exit 2
fi
ranks=$1
shift

bin=${HEADLINE_TRAINER:-.build/release/headline-trainer}
[ -x "$bin" ] || swift build -c release >&2

flags=(--bind-to core)
if [ "$ranks" -gt "$(nproc)" ]; then
    flags=(--oversubscribe --bind-to none)
fi
# OpenMPI refuses to start as root unless told that this is intended.
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# One machine: shared memory between ranks, no network interfaces.
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
exec mpirun "${flags[@]}" -np "$ranks" "$bin" train "$@"
