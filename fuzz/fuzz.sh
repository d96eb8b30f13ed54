#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of what Zastava parses from
# workloads, registries and AdmissionReviews.
#
#   fuzz/fuzz.sh [SECONDS] [TARGET...]   each target (default: all) for SECONDS (default 60)
#
# Each run replays the committed corpus (fuzz/corpus/TARGET: hand-written seeds and every input
# that once failed, kept as regression tests) and the machine's working corpus, in the cache
# (what earlier runs found: tens of MB, too much to commit), then fuzzes, adding to the
# working corpus. FUZZ_MERGE=1 merges the inputs that add coverage into fuzz/corpus.
# A crash, a timeout (-timeout) or an input that takes more memory than -rss_limit_mb fails
# the run and leaves the input in fuzz/artifacts/TARGET/ (reproduce with
# `cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-…` in fuzz/).
#
# cargo-fuzz is built once into the cache, keyed by its version. The stable toolchain does:
# with no sanitizer (`-s none`; the workspace forbids unsafe code) cargo-fuzz needs no
# nightly flag, only the coverage instrumentation stable rustc has.
set -euo pipefail
cd "$(dirname "$0")"
. ../tests/e2e/cluster/lib.sh

CARGO_FUZZ_VERSION=0.13.2
CARGO_FUZZ_ROOT=$TOOLS_DIR/cargo-fuzz-$CARGO_FUZZ_VERSION
SECONDS_PER_TARGET=${1:-60}
shift || true

if [[ ! -x $CARGO_FUZZ_ROOT/bin/cargo-fuzz ]]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $CARGO_FUZZ_ROOT"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$CARGO_FUZZ_ROOT"
fi
export PATH=$CARGO_FUZZ_ROOT/bin:$PATH

# The instrumented build lives in the cache (its dependencies build once per machine; a fresh
# checkout rebuilds only Zastava's own crates). Logs stay under fuzz/target.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$ZASTAVA_CACHE/fuzz-target}
mkdir -p target

# Debug assertions on, as in the tests; release optimisation so a second means many runs.
FUZZ_FLAGS=(-s none --release --debug-assertions)
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build "${FUZZ_FLAGS[@]}"

failed=()
summary=()
for target in "${targets[@]}"; do
  work=$ZASTAVA_CACHE/fuzz-corpus/$target
  mkdir -p "$work" "corpus/$target" "artifacts/$target"
  log=target/fuzz-$target.log
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
  # -rss_limit_mb and -timeout: an input that takes more than 1 GiB or 10 s is a finding.
  # -max_len 64 KiB: longer inputs only repeat what shorter ones reach, more slowly.
  if cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "$work" "corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=1024 -timeout=10 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
    tail -n 40 "$log" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cover=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | tr -dc 0-9)
  summary+=("$(printf '%-20s %-7s %12s runs  %6s edges' "$target" "$status" "${runs:-?}" "${cover:-?}")")
  if [[ ${FUZZ_MERGE:-0} == 1 && $status == ok ]]; then
    # libFuzzer's merge: the inputs of the working corpus that reach new coverage.
    "$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release/$target" -merge=1 \
      "corpus/$target" "$work" >"target/merge-$target.log" 2>&1
  fi
done

echo "fuzz: ${SECONDS_PER_TARGET}s per target"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
