#!/usr/bin/env bash
# Measures headline-trainer and its anchors (Keras 3 on TensorFlow and on
# JAX, PyTorch, PyTorch DDP over gloo) side by side on this machine, on
# synthetic ids and on the bundled data as the default run prepares it, and
# prints one Markdown table (also written to --out). About 6-12 minutes on
# 2 cores once the environment exists (making it takes a few more).
#
#   scripts/bench.sh [--steps N] [--warmup K] [--repeats R] [--work DIR]
#                    [--out FILE] [--venv DIR] [--keep] [--setup-only]
#
#   --steps N     timed training steps of each anchor (default 100)
#   --warmup K    steps run before the clock starts (default 10); ours
#                 times every later step of its one epoch: of the synthetic
#                 set (64 (K + N) rows) N steps on 2 ranks and K + 2N on 1,
#                 of the real set the whole epoch but K steps
#   --repeats R   runs of each of ours (default 3), one and two ranks and
#                 two independent processes in turn; the fastest counts,
#                 as noise only ever adds time (every run's figure is
#                 printed with the table)
#   --work DIR    scratch folder (default: a new one under $TMPDIR or /tmp,
#                 removed at the end unless --keep or a failure)
#   --out FILE    where the table goes (default bench-results.md)
#   --venv DIR    the Python environment of the anchors (default
#                 .venv-bench; made here, reused when complete)
#   --keep        keep the scratch folder (logs, data, weights)
#   --setup-only  make the environment and the release build, then stop
#
# Every anchor runs on one thread (one-process runs are also pinned to one
# core; two-process runs get a core each); ours runs as one process and as
# two ranks under mpirun, on loopback and shared memory only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

steps=100
warmup=10
repeats=3
work=""
out=bench-results.md
venv=.venv-bench
keep=0
setup_only=0

die() {
    echo "bench: error: $*" >&2
    exit 1
}
say() { echo "bench: $*" >&2; }

number() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 expects a whole number, got '$2'"; }
while [ $# -gt 0 ]; do
    case $1 in
        --steps) [ $# -ge 2 ] || die "--steps needs a value"; number --steps "$2"; steps=$2; shift 2 ;;
        --warmup) [ $# -ge 2 ] || die "--warmup needs a value"; number --warmup "$2"; warmup=$2; shift 2 ;;
        --repeats) [ $# -ge 2 ] || die "--repeats needs a value"; number --repeats "$2"; repeats=$2; shift 2 ;;
        --work) [ $# -ge 2 ] || die "--work needs a value"; work=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a value"; out=$2; shift 2 ;;
        --venv) [ $# -ge 2 ] || die "--venv needs a value"; venv=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --setup-only) setup_only=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[ "$steps" -ge 1 ] || die "--steps must be at least 1"
[ "$warmup" -ge 1 ] || die "--warmup must be at least 1 (the first step compiles)"
[ "$repeats" -ge 1 ] || die "--repeats must be at least 1"

started=$SECONDS
for tool in swift python3 mpirun; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed (see scripts/setup.sh)"
done

# --- The Python environment of the anchors -------------------------------
# torch from PyPI brings about 3 GB of CUDA libraries, so a CPU-only wheel
# already on this machine comes first: /opt/wheels, then pip's own
# find-links folders. Without one, PyTorch's CPU-only index.
find_cpu_torch_wheel() {
    local tag dir wheel
    tag=$(python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    local dirs=(/opt/wheels)
    # shellcheck disable=SC2206 # pip separates find-links by spaces
    [ -n "${PIP_FIND_LINKS:-}" ] && dirs+=(${PIP_FIND_LINKS//,/ })
    for dir in "${dirs[@]}"; do
        for wheel in "$dir"/torch-*+cpu-"$tag"-"$tag"-*linux*_x86_64.whl; do
            [ -f "$wheel" ] && { echo "$wheel"; return 0; }
        done
    done
    return 1
}

make_venv() {
    local wheel torch_source
    say "making the Python environment $venv (tensorflow-cpu, keras 3, jax, torch CPU)"
    if [ -e "$venv" ]; then
        # Only an unfinished environment of ours is replaced.
        [ -f "$venv/pyvenv.cfg" ] || die "$venv exists and is not a Python environment"
        rm -rf "$venv"
    fi
    python3 -m venv "$venv" || die "python3 -m venv failed (is python3-venv installed?)"
    local pip=("$venv/bin/python" -m pip install --quiet)
    if wheel=$(find_cpu_torch_wheel); then
        # The exact version of the wheel found, so pip cannot pick another.
        local version
        version=$(basename "$wheel" | cut -d- -f2)
        torch_source="local CPU wheel $wheel"
        say "torch: $torch_source"
        "${pip[@]}" --find-links "$(dirname "$wheel")" "torch==$version" \
            || die "installing $wheel failed"
    else
        torch_source="PyTorch's CPU-only index (no CPU wheel on this machine)"
        say "torch: no CPU-only wheel found in /opt/wheels; using $torch_source"
        "${pip[@]}" --index-url https://download.pytorch.org/whl/cpu torch \
            || die "installing the CPU-only torch failed"
    fi
    "${pip[@]}" numpy tensorflow-cpu "keras>=3" jax \
        || die "installing tensorflow-cpu, keras and jax failed"
    if "$venv/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
        die "CUDA packages (nvidia-*) ended up in $venv; torch is not the CPU build"
    fi
    # Each framework on its own: a broken one is named.
    "$venv/bin/python" -c 'import torch; assert torch.version.cuda is None, torch.__version__' \
        || die "torch in $venv does not import, or is a CUDA build"
    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" -c 'import tensorflow, keras' \
        || die "tensorflow or keras in $venv does not import"
    KERAS_BACKEND=jax "$venv/bin/python" -c 'import jax, keras; jax.numpy.zeros(1).block_until_ready()' \
        || die "jax in $venv does not import or run"
    echo "$torch_source" >"$venv/.bench-complete"
}

if [ -f "$venv/.bench-complete" ] && "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
    say "reusing the Python environment $venv ($(cat "$venv/.bench-complete"))"
else
    make_venv
fi
py="$root/$venv/bin/python"
[[ $venv == /* ]] && py="$venv/bin/python"
export TORCH_SOURCE
TORCH_SOURCE=$(cat "$venv/.bench-complete")

# --- Our release build ----------------------------------------------------
say "swift build -c release"
swift build -c release >&2 || die "swift build -c release failed"
bin="$root/.build/release/headline-trainer"
[ -x "$bin" ] || die "$bin is missing after the build"
[ "$setup_only" -eq 1 ] && { say "setup done"; exit 0; }

# --- Scratch folder and data sets -----------------------------------------
made_work=0
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/headline-bench.XXXXXX")
    made_work=1
else
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
fi
results="$work/results"
tries="$work/tries"
rm -rf "$results" "$tries"
mkdir -p "$results" "$tries"
finish() {
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo "bench: failed; logs and results are in $work" >&2
    elif [ "$keep" -eq 0 ] && [ "$made_work" -eq 1 ]; then
        rm -rf "$work"
    else
        echo "bench: kept $work" >&2
    fi
}
trap finish EXIT

tools="$root/scripts/reference/bench_tools.py"
anchors="$root/scripts/reference/bench_anchors.py"

# The synthetic set has room for the largest run: warm-up plus timed steps
# at the global batch of two ranks.
synthetic="$work/synthetic"
"$py" "$tools" synthetic --out "$synthetic" --rows $(((warmup + steps) * 64)) \
    || die "making the synthetic data failed"

# The bundled data, imported with the default run's own prepare arguments
# (read from defaultPrepareArguments, so the two cannot drift apart).
real="$work/real"
csv="$root/data/fb-news-posts-2017/fb_news_posts_20K.csv"
[ -f "$csv" ] || die "the bundled CSV $csv is missing"
prepare_text=$("$py" "$tools" default-prepare-args \
    --source "$root/Sources/Launcher/Import/BundledDataset.swift") \
    || die "could not read defaultPrepareArguments"
mapfile -t prepare_args <<<"$prepare_text"
[ ${#prepare_args[@]} -gt 0 ] || die "defaultPrepareArguments gave no arguments"
say "prepare ${prepare_args[*]}"
"$bin" prepare --csv "$csv" --out "$real" "${prepare_args[@]}" --overwrite \
    >"$work/prepare.log" 2>&1 \
    || { cat "$work/prepare.log" >&2; die "headline-trainer prepare failed"; }

# --- Runs -----------------------------------------------------------------
# One-process runs (ours and the anchors) all run on one and the same core,
# the last this script may use; the two-process runs get a core each.
core=$("$py" -c 'import os; print(sorted(os.sched_getaffinity(0))[-1])')
mapfile -t pair_cores < <("$py" -c 'import os; print(*sorted(os.sched_getaffinity(0))[:2], sep="\n")')
[ "$("$py" -c 'import os; print(len(os.sched_getaffinity(0)))')" -ge 2 ] \
    || die "the two-rank runs need at least 2 cores"
mpi_env=(OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo)
if [ "$(id -u)" -eq 0 ]; then
    mpi_env+=(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
fi

# ours NAME DATA RANKS TRY: one epoch of train, timed after the warm-up
# steps; the peak RSS of every rank measured by its own wrapper.
ours() {
    local name=$1 data=$2 ranks=$3 try=$4 log="$work/$1.try$4.log"
    local batch=$((32 * ranks))
    local pin=()
    [ "$ranks" -eq 1 ] && pin=(--core "$core")
    local cmd=("$py" "$tools" measure --out "$tries/$name.rss$try" "${pin[@]}" --
        "$bin" train --data "$data" --batch-size "$batch" --epochs 1
        --timing-skip "$warmup" --save-weights "$work/$name.safetensors")
    say "ours: $name (run $try of $repeats)"
    if [ "$ranks" -eq 1 ]; then
        "${cmd[@]}" >"$log" 2>&1 || { tail -20 "$log" >&2; die "$name failed (log: $log)"; }
    else
        env "${mpi_env[@]}" mpirun --bind-to core -np "$ranks" "${cmd[@]}" >"$log" 2>&1 \
            || { tail -20 "$log" >&2; die "$name failed (log: $log)"; }
    fi
    "$py" "$tools" ours-result --log "$log" --rss "$tries/$name.rss$try" \
        --data-name "$(basename "$data")" --ranks "$ranks" --batch "$batch" \
        --out "$tries/$name.try$try.json" || die "reading the results of $name failed"
}

# pair NAME DATA TRY: two one-process runs of ours at the same time, one on
# each of the cores the two ranks get, each on the whole set at batch 32.
# Nothing ties them together, so their summed samples/s is what two busy
# cores of this machine give at that moment: the ceiling of any two-rank
# run, against which the two-rank ratio can be read.
pair() {
    local name=$1 data=$2 try=$3 k pids=() logs=()
    say "ours: $name, two independent processes (run $try of $repeats)"
    for k in 0 1; do
        logs+=("$work/$name.try$try.p$k.log")
        "$py" "$tools" measure --out "$tries/$name.rss$try.p$k" --core "${pair_cores[$k]}" -- \
            "$bin" train --data "$data" --batch-size 32 --epochs 1 \
            --timing-skip "$warmup" --output "$work/$name.p$k" \
            >"${logs[$k]}" 2>&1 &
        pids+=($!)
    done
    for k in 0 1; do
        wait "${pids[$k]}" || { tail -20 "${logs[$k]}" >&2; die "$name failed (log: ${logs[$k]})"; }
    done
    "$py" "$tools" pair-result --logs "${logs[@]}" \
        --rss "$tries/$name.rss$try.p0" "$tries/$name.rss$try.p1" \
        --data-name "$(basename "$data")" --out "$tries/$name.try$try.json" \
        || die "reading the results of $name failed"
}

# anchor SYSTEM DATA [PROCS]: one anchor run, its result as JSON.
anchor() {
    local system=$1 data=$2 name="$1-$(basename "$2")" log pin=()
    log="$work/$name.log"
    [ "$system" = torch-ddp ] || pin=(--core "$core")
    say "anchor: $name"
    "$py" "$anchors" train --system "$system" --data "$data" --batch-size 32 "${pin[@]}" \
        --warmup "$warmup" --steps "$steps" --out "$results/$name.json" >"$log" 2>&1 \
        || { tail -20 "$log" >&2; die "anchor $name failed (log: $log)"; }
}

read -r load1 _ </proc/loadavg
cp /proc/loadavg "$results/loadavg.start"
if awk "BEGIN { exit !($load1 > 0.5) }"; then
    say "warning: the load average is $load1 before the runs; other work will slow every figure"
fi

for data in "$synthetic" "$real"; do
    d=$(basename "$data")
    # One and two ranks in turn, so that both meet the machine alike.
    for try in $(seq "$repeats"); do
        ours "ours-$d-1" "$data" 1 "$try"
        ours "ours-$d-2" "$data" 2 "$try"
        pair "pair-$d" "$data" "$try"
    done
    for ranks in 1 2; do
        "$py" "$tools" best-of --out "$results/ours-$d-$ranks.json" \
            "$tries/ours-$d-$ranks".try*.json || die "choosing among the runs of ours-$d-$ranks failed"
    done
    "$py" "$tools" best-of --out "$results/pair-$d.json" "$tries/pair-$d".try*.json \
        || die "choosing among the runs of pair-$d failed"
    for system in keras-jax keras-tf torch torch-ddp; do
        anchor "$system" "$data"
    done
done

# predict: ours (the whole command, loading included) and Keras on JAX
# (model.predict, after one untimed call), on every row of the real set.
say "predict: ours"
"$py" "$tools" measure --out "$results/predict-ours.rss" --core "$core" -- \
    "$bin" predict --weights "$work/ours-real-1.safetensors" --data "$real" \
    --out "$work/predictions.npy" --batch-size 256 >"$work/predict-ours.log" 2>&1 \
    || { cat "$work/predict-ours.log" >&2; die "ours predict failed"; }
"$py" "$tools" predict-result --rss "$results/predict-ours.rss" \
    --predictions "$work/predictions.npy" --batch 256 --data-name real \
    --out "$results/predict-ours.json" || die "reading the predict results failed"
say "predict: keras-jax"
"$py" "$anchors" predict --system keras-jax --data "$real" --batch-size 256 --core "$core" \
    --out "$results/predict-keras-jax.json" >"$work/predict-keras-jax.log" 2>&1 \
    || { tail -20 "$work/predict-keras-jax.log" >&2; die "keras-jax predict failed"; }

# --- Table ----------------------------------------------------------------
[[ $out == /* ]] || out="$root/$out"
"$py" "$tools" report --results "$results" --out "$out" --core "$core" \
    --wall-seconds $((SECONDS - started)) || die "making the table failed"
say "table written to $out; whole run $((SECONDS - started)) s"
