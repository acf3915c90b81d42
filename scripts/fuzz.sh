#!/usr/bin/env bash
# Builds the libFuzzer harnesses in Fuzz/Harnesses and runs each one for a
# bounded time on its seed corpus (Fuzz/corpus/<target>).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS is the time per target (default 60); the targets are npy,
# safetensors, csv, vocabulary and prepare-json (default: all, one after
# the other, so one core is busy at a time). Prints, per target, the
# executions run (libFuzzer's stat::number_of_executed_units) and the
# crashes found, then a total line; exits 1 when anything crashed.
#
# A run stops at its first crash (libFuzzer's default). The input goes to
# Fuzz/crashers/<target>/ (crash-*, leak-*, timeout-*, oom-*); the XCTest
# suite feeds every file there to the parser and expects a clean error,
# so commit it together with the fix. The log of each run is
# .build/fuzz/<target>.log; the units libFuzzer adds to the corpus stay in
# .build/fuzz/corpus/<target>, out of the repository.
#
# Environment: SWIFTC (default swiftc), FUZZ_BUILD_DIR (default
# .build/fuzz), FUZZ_UNIT_TIMEOUT (seconds one input may take before it
# counts as a hang, default 10), FUZZ_FLAGS (more libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(npy safetensors csv vocabulary prepare-json checkpoint)

seconds=60
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
if [ "$seconds" -lt 1 ]; then
    echo "fuzz.sh: SECONDS must be at least 1" >&2
    exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all_targets[@]}")
fi
for target in "${targets[@]}"; do
    case $target in
    npy | safetensors | csv | vocabulary | prepare-json | checkpoint) ;;
    *)
        echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
        echo "targets: ${all_targets[*]}" >&2
        exit 2
        ;;
    esac
done

swiftc=${SWIFTC:-swiftc}
build=${FUZZ_BUILD_DIR:-.build/fuzz}
unit_timeout=${FUZZ_UNIT_TIMEOUT:-10}
# -O keeps Swift's bounds and overflow checks (only -Ounchecked drops
# them); -g gives ASan and the traps symbolised stacks.
flags=(-sanitize=fuzzer,address -parse-as-library -O -g)
mkdir -p "$build/modules"

# The readers, compiled from the package's own sources into small modules
# built with coverage and ASan; the harnesses use them with @testable
# import, so no target of the package changes.
network_sources=(
    Sources/Network/Formats/FileIO.swift
    Sources/Network/Formats/HostArray.swift
    Sources/Network/Formats/JSON.swift
    Sources/Network/Formats/NPY.swift
    Sources/Network/Formats/PythonLiteral.swift
    Sources/Network/Formats/SafeTensors.swift
)
# Launcher is an executable target; these are the files its CSV,
# vocabulary and prepare.json readers need, and nothing that reaches MPI.
import_sources=(
    Sources/Launcher/Commands/Arguments.swift  # UsageError, thrown by TimeFormat
    Sources/Launcher/Import/CSVTable.swift
    Sources/Launcher/Import/Features.swift
    Sources/Launcher/Import/ImportError.swift
    Sources/Launcher/Import/Numbers.swift
    Sources/Launcher/Import/PrepareRecord.swift
    Sources/Launcher/Import/TimeParsing.swift
    Sources/Launcher/Import/Tokenizer.swift
)

# The checkpoint reader also needs the model's types (ModelConfig,
# StepSums) and a few training files; this Network is the whole module,
# built into its own folder so that it does not shadow the small one.
network_all_sources=($(find Sources/Network -name '*.swift' | sort))
checkpoint_sources=(
    Sources/Launcher/Data/TrainingData.swift  # DataError
    Sources/Launcher/Training/Checkpoint.swift
    Sources/Launcher/Training/Metrics.swift
    Sources/Launcher/Training/SHA256.swift
    Sources/Launcher/Training/TrainSettings.swift
)

build_module() {  # name, sources... (FUZZ_MODULES overrides the folder)
    local name=$1
    shift
    echo "fuzz.sh: building module $name" >&2
    if ! "$swiftc" "${flags[@]}" -enable-testing -wmo -module-name "$name" \
        -I "${FUZZ_MODULES:-$build/modules}" \
        -emit-module -emit-module-path "${FUZZ_MODULES:-$build/modules}/$name.swiftmodule" \
        -c "$@" -o "$build/${FUZZ_OBJECT:-$name}.o" >"$build/build-$name.log" 2>&1; then
        grep -v 'ld.gold: warning' "$build/build-$name.log" >&2
        echo "fuzz.sh: building $name failed" >&2
        exit 2
    fi
}

build_harness() {  # target, module, harness files...
    local target=$1 module=$2
    shift 2
    echo "fuzz.sh: building harness $target" >&2
    # ld.gold warns about every ASan helper symbol; the log keeps them.
    if ! "$swiftc" "${flags[@]}" -I "${FUZZ_MODULES:-$build/modules}" Fuzz/Harnesses/Support.swift \
        "$@" "$build/$module.o" -o "$build/fuzz-$target" \
        >"$build/build-$target.log" 2>&1; then
        grep -v 'ld.gold: warning' "$build/build-$target.log" >&2
        echo "fuzz.sh: building the $target harness failed" >&2
        exit 2
    fi
}

needs_network=0
needs_import=0
needs_checkpoint=0
for target in "${targets[@]}"; do
    case $target in
    npy | safetensors) needs_network=1 ;;
    checkpoint) needs_checkpoint=1 ;;
    *) needs_import=1 ;;
    esac
done
[ $needs_network -eq 1 ] && build_module Network "${network_sources[@]}"
[ $needs_import -eq 1 ] && build_module LauncherImport "${import_sources[@]}"
if [ $needs_checkpoint -eq 1 ]; then
    mkdir -p "$build/modules-all"
    FUZZ_MODULES=$build/modules-all FUZZ_OBJECT=NetworkAll \
        build_module Network "${network_all_sources[@]}"
    FUZZ_MODULES=$build/modules-all \
        build_module LauncherCheckpoint "${checkpoint_sources[@]}"
fi
for target in "${targets[@]}"; do
    case $target in
    npy) build_harness npy Network Fuzz/Harnesses/TensorSupport.swift Fuzz/Harnesses/NPYFuzz.swift ;;
    safetensors) build_harness safetensors Network Fuzz/Harnesses/TensorSupport.swift Fuzz/Harnesses/SafeTensorsFuzz.swift ;;
    csv) build_harness csv LauncherImport Fuzz/Harnesses/CSVFuzz.swift ;;
    vocabulary) build_harness vocabulary LauncherImport Fuzz/Harnesses/VocabularyFuzz.swift ;;
    prepare-json) build_harness prepare-json LauncherImport Fuzz/Harnesses/PrepareJSONFuzz.swift ;;
    checkpoint)
        FUZZ_MODULES=$build/modules-all build_harness checkpoint LauncherCheckpoint \
            Fuzz/Harnesses/CheckpointFuzz.swift "$build/NetworkAll.o" ;;
    esac
done

artifacts() {  # directory: the libFuzzer artifacts in it, one per line
    find "$1" -maxdepth 1 -type f \
        \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) \
        | sort
}

total_runs=0
total_crashes=0
summary=()
for target in "${targets[@]}"; do
    crashers=Fuzz/crashers/$target
    work=$build/corpus/$target
    mkdir -p "$crashers" "$work"
    before=$(artifacts "$crashers")
    log=$build/$target.log
    echo "fuzz.sh: running $target for $seconds s (log: $log)" >&2
    status=0
    # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
    "$build/fuzz-$target" -max_total_time="$seconds" -print_final_stats=1 \
        -timeout="$unit_timeout" -rss_limit_mb=2048 \
        -artifact_prefix="$crashers/" ${FUZZ_FLAGS:-} \
        "$work" "Fuzz/corpus/$target" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    new=$(comm -13 <(printf '%s\n' "$before") <(artifacts "$crashers") | sed '/^$/d')
    crashes=$(printf '%s' "$new" | grep -c . || true)
    if [ -z "$runs" ]; then
        echo "fuzz.sh: $target ended (status $status) without final stats; see $log" >&2
        tail -n 20 "$log" >&2
        runs=0
        [ "$crashes" -eq 0 ] && crashes=1
    fi
    line=$(printf '%-13s %12s executions  %d crash(es)' "$target" "$runs" "$crashes")
    summary+=("$line")
    echo "$line"
    if [ -n "$new" ]; then
        printf '    %s\n' $new
        grep -m 1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|Fatal error|fuzz harness:' "$log" \
            | sed 's/^/    /' || true
    fi
    total_runs=$((total_runs + runs))
    total_crashes=$((total_crashes + crashes))
done
printf '%-13s %12s executions  %d crash(es) in %d target(s), %d s each\n' \
    total "$total_runs" "$total_crashes" "${#targets[@]}" "$seconds"
[ "$total_crashes" -eq 0 ]
