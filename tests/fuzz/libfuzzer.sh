#!/bin/bash
# libfuzzer.sh - builds the fuzz targets with clang's libFuzzer (plus ASan and
# UBSan) and runs each for a bounded time; the meson test "fuzz-libfuzzer".
#
#   libfuzzer.sh SOURCE_ROOT BUILD_ROOT LIBMLT_COMMON_A
#
# The ordinary build may use gcc, so this script compiles the targets itself:
# each target's decoder sources (and the generated protobuf code) with
# -fsanitize=fuzzer,address,undefined, so libFuzzer sees their coverage,
# linked with the gcc-built libmlt_common.a for the rest. Everything goes under
# BUILD_ROOT/tests/fuzz/libfuzzer/<target>/: the binary, a working copy of the
# seed corpus (the checked-in corpus is never written) and artifacts/, where
# libFuzzer saves an input that crashed, leaked, timed out or ran out of
# memory. Any of those fails the test, naming the saved input; replay it with
#   BUILD_ROOT/tests/fuzz/libfuzzer/<target>/fuzz_<target> ARTIFACT
#
# MLT_FUZZ_SECONDS (default 20) bounds each target's run; MLT_FUZZ_TARGETS
# (default "wire idx ratings jobfile") picks targets. Prints the executions of
# each target. Exits 77 (skip) with the reason when clang or libFuzzer is
# missing (scripts/deps.sh installs clang and libclang-rt-14-dev).
set -u

src=${1:?usage: libfuzzer.sh SOURCE_ROOT BUILD_ROOT LIBMLT_COMMON_A}
bld=${2:?}
common_lib=${3:?}
secs=${MLT_FUZZ_SECONDS:-20}
targets=${MLT_FUZZ_TARGETS:-wire idx ratings jobfile}
out="$bld/tests/fuzz/libfuzzer"

skip() {
    echo "SKIP: $*"
    exit 77
}

cc=""
for c in clang clang-14 clang-15 clang-16; do
    if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
done
[ -n "$cc" ] || skip "clang is not installed (apt-get install clang libclang-rt-14-dev)"
mkdir -p "$out" || exit 1
probe="$out/probe"
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
    >"$probe.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" 2>"$probe.log"; then
    skip "$cc cannot link -fsanitize=fuzzer,address,undefined (libFuzzer missing: apt-get install libclang-rt-14-dev): $(head -c 300 "$probe.log")"
fi

cflags=(-std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined -I"$src" -I"$bld" -I"$src/tests/fuzz")
read -r -a pkg_cflags <<<"$(pkg-config --cflags libprotobuf-c libconfig zlib libzmq 2>/dev/null)"
read -r -a pkg_libs <<<"$(pkg-config --libs libprotobuf-c libconfig zlib libzmq 2>/dev/null)"

sources_of() {
    local f="$src/tests/fuzz"
    case $1 in
    wire) echo "$f/fuzz_wire.c $f/fuzz_util.c $src/proto/wire.c $bld/proto/mltuner.pb-c.c" ;;
    idx) echo "$f/fuzz_idx.c $f/fuzz_util.c $src/worker/data.c" ;;
    ratings) echo "$f/fuzz_ratings.c $f/fuzz_util.c $src/worker/data.c $src/worker/ratings.c" ;;
    jobfile) echo "$f/fuzz_jobfile.c $f/fuzz_util.c $src/common/jobfile.c $src/common/jobfile_check.c $src/common/jobfile_write.c $src/common/keytable.c $src/common/keytable_value.c $src/common/keytable_write.c" ;;
    *) return 1 ;;
    esac
}

failed=0
summary=()
for t in $targets; do
    dir="$out/$t"
    bin="$dir/fuzz_$t"
    rm -rf "$dir/corpus" "$dir/artifacts"
    mkdir -p "$dir/corpus" "$dir/artifacts" || exit 1
    srcs=$(sources_of "$t") || { echo "unknown target $t"; exit 1; }
    # shellcheck disable=SC2086
    if ! "$cc" "${cflags[@]}" "${pkg_cflags[@]}" $srcs "$common_lib" "${pkg_libs[@]}" -lm -lpthread \
            -o "$bin" 2>"$dir/build.log"; then
        echo "FAIL fuzz_$t: does not build with $cc:"
        cat "$dir/build.log"
        failed=1
        continue
    fi
    cp "$src/tests/fuzz/corpus/$t"/* "$dir/corpus/"
    seeds=$(ls "$dir/corpus" | wc -l)
    # libFuzzer's default exit code for a finding is 77, which meson reads as
    # a skip: every finding must exit 1
    LSAN_OPTIONS="suppressions=$src/tests/fuzz/lsan.supp" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$dir/artifacts/" \
        "$dir/corpus" >"$dir/run.log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/run.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$dir/run.log" | tail -1)
    found=$(ls "$dir/artifacts")
    line="fuzz_$t: ${execs:-?} executions in ${secs} s, $seeds seeds -> $(ls "$dir/corpus" | wc -l) inputs, ${cov:-cov: ?}"
    summary+=("$line")
    echo "$line"
    if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
        echo "FAIL fuzz_$t: libFuzzer exited $rc; its log ($dir/run.log) ends:"
        tail -n 40 "$dir/run.log"
        for a in $found; do echo "FAIL fuzz_$t: input saved as $dir/artifacts/$a"; done
        failed=1
    fi
done
echo "--- fuzz executions per target (${secs} s each, $cc):"
printf '%s\n' "${summary[@]}"
exit $failed
