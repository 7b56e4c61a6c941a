#!/usr/bin/env bash
# Regenerates every figure in BENCHMARKS.md: builds the benches, runs each one (criterion), then rewrites
# the generated regions of BENCHMARKS.md from criterion's results (benches/src/bin/bench-report.rs).
# Hand-written text outside the `<!-- bench-report:... -->` markers is kept.
#
# Usage: benches/run.sh            (about 20 minutes on the 2-core VM: 5 to 7 building, 7 running a round)
# Environment: WARM_UP (s, default 1), MEASURE (s, default 3) per bench case; ROUNDS (default 2): how many
# times every bench runs, one round after the other, the report keeping each row's round with the lowest
# median (this host runs code with no oclayer in it at half speed for seconds at a time: see
# `cargo run --release -p oclayer-benches --example phases`; the noise only ever adds time);
# BENCHMARKS_MD (the file to rewrite, default BENCHMARKS.md); CARGO_TARGET_DIR as usual.
# A bench that fails does not stop the others: the report is still written (its rows say "not run") and
# the script exits non-zero at the end, naming the failed benches.
# The ocagent cases set their own times (15 s each); the ocagent outage report is left out (run it with
# `cargo bench -p oclayer-benches --bench ocagent -- ocagent/outage`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

warm_up="${WARM_UP:-1}"
measure="${MEASURE:-3}"
rounds="${ROUNDS:-2}"
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
  echo "run.sh: ROUNDS must be a whole number of at least 1, not '$rounds'" >&2
  exit 2
fi
report="${BENCHMARKS_MD:-BENCHMARKS.md}"
target_dir="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
# Criterion's output, wiped first so that every figure in the report comes from this run; each round
# writes into a directory of its own below it.
criterion_dir="$target_dir/criterion"
rm -rf "$criterion_dir"

started=$SECONDS
echo "== building the benches and the report writer (release)"
# The bench profile, so that the report writer shares the benches' build instead of a second release build.
cargo build --profile bench -p oclayer-benches --bin bench-report
benches="$(cargo bench -p oclayer-benches --no-run --message-format=json \
  | jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.kind == ["bench"])
           | "\(.target.name)=\(.executable)"')"
if [[ -z "$benches" ]]; then
  echo "run.sh: cargo built no bench executables; check \`cargo bench -p oclayer-benches --no-run\`" >&2
  exit 1
fi

# The binaries run directly, so cargo's lock is not held while timing.
run_bench() {
  local name="$1"; shift
  local exe
  exe="$(grep "^$name=" <<<"$benches" | cut -d= -f2-)"
  if [[ -z "$exe" ]]; then
    echo "run.sh: no bench named $name was built (is it declared in benches/Cargo.toml?)" >&2
    exit 1
  fi
  echo "== $name, round $round of $rounds ($((SECONDS - started)) s elapsed)"
  if ! "$exe" --bench --warm-up-time "$warm_up" --measurement-time "$measure" "$@"; then
    echo "run.sh: bench $name failed in round $round; its rows will say \"not run\" unless another round ran it" >&2
    failed+=("$name (round $round)")
  fi
}
failed=()

for ((round = 1; round <= rounds; round++)); do
  export CRITERION_HOME="$criterion_dir/round-$round"
  run_bench macro
  run_bench trace
  run_bench tree
  run_bench stats
  run_bench gateway
  # A regex filter: it also keeps the ocagent outage report (a 20 s soak, not a table) from running.
  run_bench ocagent 'ocagent/(discard|agent)'
done

echo "== writing $report ($((SECONDS - started)) s elapsed)"
"$target_dir/release/bench-report" "$criterion_dir" "$report"
echo "== done in $((SECONDS - started)) s"
if ((${#failed[@]})); then
  echo "run.sh: failed benches: ${failed[*]}" >&2
  exit 1
fi
