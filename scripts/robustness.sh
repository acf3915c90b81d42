#!/usr/bin/env bash
# Randomised robustness trials against a built trainer (release by default):
#
#   kill/resume  SIGKILL a random rank at a random moment (from outside, by
#                pid), resume with --resume, compare the final weights and
#                metrics files byte for byte with the run never interrupted;
#   SIGTERM      to a single process, to rank 0 under mpirun, and to mpirun;
#                the run must stop with a checkpoint and resume bit-identically;
#   failures     HEADLINE_TEST_FAIL error / late-error on rank 0 or 1 of 2 or
#                3 ranks at a random step: exit 1, the rank named, within 10 s;
#   NaN          a NaN gradient on one rank: all stop (exit 1), or with
#                --skip-nonfinite all skip it and finish.
#
# Usage: scripts/robustness.sh [TRIALS [SEED]]   (defaults 20 and $RANDOM)
# Environment: BIN (default .build/release/headline-trainer), PY (python3).
# Everything runs on this machine; mpirun stays on loopback and shared memory.
set -u
cd "$(dirname "$0")/.."
TRIALS=${1:-20}
SEED=${2:-$RANDOM}
RANDOM=$SEED
BIN=${BIN:-.build/release/headline-trainer}
PY=${PY:-python3}
[[ -x $BIN ]] || { echo "no executable at $BIN; swift build -c release"; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
export OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo
if [[ $(id -u) == 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT

$PY - "$W/data" <<'EOF' || { echo "could not write the data"; exit 2; }
import sys, os, numpy as np
r = np.random.default_rng(23); d = sys.argv[1]; os.makedirs(d)
n = 2000
np.save(f"{d}/main_input.npy", r.integers(0, 500, (n, 16), dtype=np.int32))
np.save(f"{d}/aux_input.npy", r.random((n, 5), dtype=np.float32))
np.save(f"{d}/labels.npy", (r.random((n, 1)) > 0.5).astype(np.float32))
EOF
# 1800 training rows, batch 16: 113 steps per epoch, 339 in all.
STEPS=339
opts() {  # opts NAME: the train command line of run NAME
    echo train --data "$W/data" --vocab-size 500 --embedding-dim 16 \
        --lstm-units 8 --dense-units 8 --batch-size 16 --epochs 3 \
        --validation-split 0.1 --seed 5 --learning-rate 0.01 \
        --checkpoint-dir "$W/$1.ckpt" --save-weights "$W/$1.st" \
        --metrics "$W/$1.jsonl"
}
launch() {  # launch RANKS ARGS...: start in the background, pid in $PID
    local ranks=$1; shift
    if [[ $ranks == 1 ]]; then
        timeout -k 5 300 "$BIN" "$@" >>"$W/log" 2>&1 &
    else
        timeout -k 5 300 mpirun --oversubscribe --bind-to none -np "$ranks" \
            "$BIN" "$@" >>"$W/log" 2>&1 &
    fi
    PID=$!
}
child_of() {  # child_of PID: the pid of PID's (timeout's) one child
    pgrep -P "$1" | head -1
}
rank_pid() {  # rank_pid TIMEOUT_PID RANK: that rank's pid under mpirun
    local mp; mp=$(child_of "$1")
    [[ -n $mp ]] || return
    for p in $(pgrep -P "$mp"); do
        if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null \
            | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then echo "$p"; fi
    done
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
same() {  # same NAME RANKS: run NAME wrote the reference's exact files
    cmp -s "$W/$1.st" "$W/ref$2.st" && cmp -s "$W/$1.jsonl" "$W/ref$2.jsonl"
}

# The references, and how long each takes, to aim the kills inside a run.
declare -A TOOK
for ranks in 1 2; do
    start=$(now_ms)
    launch "$ranks" $(opts "ref$ranks"); wait "$PID" \
        || { echo "the reference on $ranks rank(s) failed"; tail "$W/log"; exit 1; }
    TOOK[$ranks]=$(( $(now_ms) - start ))
done
echo "seed $SEED; references: 1 rank ${TOOK[1]} ms, 2 ranks ${TOOK[2]} ms"

kills=0; kill_same=0; kill_missed=0; fresh=0
for trial in $(seq 1 "$TRIALS"); do
    ranks=$(( trial % 2 + 1 )); every=$(( RANDOM % 7 + 1 ))
    name=k$trial; took=${TOOK[$ranks]}
    delay=$(( took / 10 + RANDOM * took * 8 / 10 / 32768 ))
    launch "$ranks" $(opts "$name") --checkpoint-every "$every"
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    if [[ $ranks == 1 ]]; then victim=$(child_of "$PID")
    else victim=$(rank_pid "$PID" $(( RANDOM % 2 ))); fi
    if [[ -z $victim ]] || ! kill -9 "$victim" 2>/dev/null; then
        wait "$PID"; kill_missed=$((kill_missed + 1)); continue
    fi
    { wait "$PID"; } 2>/dev/null  # no "Killed" notice from bash
    [[ -e $W/$name.st ]] && { kill_missed=$((kill_missed + 1)); continue; }
    kills=$((kills + 1))
    ls "$W/$name.ckpt"/ckpt-e* >/dev/null 2>&1 || fresh=$((fresh + 1))
    launch "$ranks" $(opts "$name") --checkpoint-every "$every" --resume
    wait "$PID"
    if same "$name" "$ranks"; then kill_same=$((kill_same + 1))
    else echo "trial $trial: $ranks rank(s), kill after $delay ms, every $every: DIFFERENT"; fi
done
echo "kill/resume: $kill_same of $kills bit-identical ($fresh had no checkpoint" \
    "yet and restarted; $kill_missed draws missed a running rank)"

# Signalled once its first checkpoint exists (so it surely runs), after a
# random 0-300 ms more; steps slowed by 5 ms, since mpirun hands SIGTERM on
# to the ranks about a second late.
stops=0; stop_same=0; stop_late=0; trial=0
for how in single rank0 mpirun single rank0 mpirun; do
    trial=$((trial + 1)); name=t$trial
    ranks=2; [[ $how == single ]] && ranks=1
    HEADLINE_TEST_STEP_DELAY_MS=5 launch "$ranks" $(opts "$name") \
        --checkpoint-every 5
    until ls "$W/$name.ckpt"/ckpt-e* >/dev/null 2>&1 \
        || ! kill -0 "$PID" 2>/dev/null; do sleep 0.01; done
    sleep "0.$(printf '%03d' $(( RANDOM % 300 )))"
    case $how in
        single) target=$(child_of "$PID") ;;
        rank0) target=$(rank_pid "$PID" 0) ;;
        mpirun) target=$(child_of "$PID") ;;
    esac
    [[ -n $target ]] && kill -TERM "$target"
    wait "$PID"; rc=$?
    if [[ -e $W/$name.st ]]; then stop_late=$((stop_late + 1)); continue; fi
    stops=$((stops + 1))
    expected=143; [[ $how == mpirun ]] && expected=1  # mpirun's own status
    [[ $rc == "$expected" ]] || echo "SIGTERM to $how: exit $rc, not $expected"
    launch "$ranks" $(opts "$name") --checkpoint-every 5 --resume; wait "$PID"
    if [[ $rc == "$expected" ]] && same "$name" "$ranks"; then
        stop_same=$((stop_same + 1))
    else echo "SIGTERM to $how: DIFFERENT after resume"; fi
done
echo "SIGTERM: $stop_same of $stops stopped with the expected status and" \
    "resumed bit-identically ($stop_late signals came after the run ended)"

fails=0; fail_ok=0
for ranks in 2 3; do for rank in 0 1; do for kind in error late-error; do
    step=$(( RANDOM % STEPS + 1 )); name=f$fails; fails=$((fails + 1))
    start=$(now_ms)
    HEADLINE_TEST_FAIL=$rank:$step:$kind timeout -k 5 60 mpirun --oversubscribe \
        --bind-to none -np "$ranks" "$BIN" $(opts "$name") >"$W/$name.out" 2>&1
    rc=$?; took=$(( $(now_ms) - start ))
    if [[ $rc == 1 ]] && (( took < 10000 )) \
        && grep -q "rank $rank: injected test failure" "$W/$name.out"; then
        fail_ok=$((fail_ok + 1))
    else
        echo "failure $kind on rank $rank of $ranks at step $step: exit $rc after $took ms"
    fi
done; done; done
echo "failures: $fail_ok of $fails jobs ended with exit 1, naming the rank, within 10 s"

nan_ok=0
HEADLINE_TEST_FAIL=1:$(( RANDOM % STEPS + 1 )):nan timeout -k 5 60 mpirun \
    --oversubscribe --bind-to none -np 2 "$BIN" $(opts nan1) >"$W/nan1.out" 2>&1
[[ $? == 1 ]] && grep -q "became non-finite" "$W/nan1.out" && nan_ok=$((nan_ok + 1))
HEADLINE_TEST_FAIL=1:$(( RANDOM % STEPS + 1 )):nan timeout -k 5 60 mpirun \
    --oversubscribe --bind-to none -np 2 "$BIN" $(opts nan2) --skip-nonfinite \
    >"$W/nan2.out" 2>&1
[[ $? == 0 ]] && grep -q "skipped 1 step(s) in all" "$W/nan2.out" && nan_ok=$((nan_ok + 1))
echo "NaN: $nan_ok of 2 (stop on every rank; skip on every rank)"

total=$(( kills + stops + fails + 2 )); good=$(( kill_same + stop_same + fail_ok + nan_ok ))
echo "tally: $good of $total trials as expected (seed $SEED)"
[[ $good == "$total" ]]
