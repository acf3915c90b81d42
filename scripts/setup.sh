#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test the trainer:
# OpenMPI (library, headers and mpirun) and pkg-config. Does nothing when
# they are already there.
set -euo pipefail

need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists ompi-c 2>/dev/null || need+=(libopenmpi-dev)
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
# The tests compare against files written by numpy and the Python
# safetensors package.
pip_need=""
python3 -c 'import numpy' >/dev/null 2>&1 || pip_need="numpy"
python3 -c 'import safetensors' >/dev/null 2>&1 \
    || pip_need="$pip_need safetensors"

if [ -n "$pip_need" ]; then
    echo "setup: installing$pip_need for python3"
    # shellcheck disable=SC2086 # the names are separate words
    python3 -m pip install --quiet $pip_need
fi
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

echo "setup: installing ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}"
