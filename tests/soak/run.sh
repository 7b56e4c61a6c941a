#!/usr/bin/env bash
# The load and fault soak: the demo gateway (examples/gateway) under concurrent load while its embedded
# OpenCensus agent is killed and restarted twice and slowed down once; the same faults with a span queue
# too small to hold an outage's spans, so that drops are part of the account; then the same load with the
# agent left alone, as a baseline. Each run prints requests served, latency percentiles (during and outside
# the faults), the span account (handed = confirmed by the agent + dropped + undelivered, or the run
# fails) and peak RSS. See README.md, "Reliability".
#
#   tests/soak/run.sh                      # 60 s each, 32 requests in flight
#   SOAK_SECS=20 SOAK_CONCURRENCY=8 tests/soak/run.sh
#   SOAK_BASELINE=0 tests/soak/run.sh      # the fault run only
#
# Output also goes to $SOAK_OUT (default: target/soak/), one file per run.
set -euo pipefail

cd "$(dirname "$0")/../.."
secs="${SOAK_SECS:-60}"
concurrency="${SOAK_CONCURRENCY:-32}"
baseline="${SOAK_BASELINE:-1}"
target="${CARGO_TARGET_DIR:-target}"
out="${SOAK_OUT:-$target/soak}"
mkdir -p "$out"

cargo build --release --example gateway
gateway="$target/release/examples/gateway"

run() {
    local name="$1"
    shift
    echo "== soak: $name =="
    # The gateway's listen port falls back to a free one when 8080 is taken; Prometheus too.
    "$gateway" --soak "$secs" --concurrency "$concurrency" "$@" 2>&1 | tee "$out/$name.txt"
}

run faults
# The same faults with a span queue too small to ride them out: drops, counted exactly.
run faults-small-queue --max-queued-spans 8192
if [ "$baseline" != 0 ]; then
    run baseline --no-faults
fi
