//! Is a row's spread the code's or the host's? Times, in alternating blocks of a few hundred milliseconds
//! on one thread, by its CPU clock:
//!
//! - `call`: an unsampled `#[trace_layer(pipe)]` call with its measures (`oclayer/unsampled`);
//! - `clock`: the latency's two clock readings alone, latency-bound (a microcoded `rdtsc` on AMD);
//! - `ilp`: six independent shift-xor-add chains, no oclayer code, bound by the core's throughput.
//!
//! If `ilp` swings as much as `call` within one process while `clock` holds still, the swings come from
//! something outside the process sharing the core's execution units (on a VM, another guest on the same
//! physical core), not from oclayer. Run: `cargo run --release -p oclayer-benches --example phases`.

use std::hint::black_box;

use criterion::measurement::Measurement;
use oclayer::__private::ClockReading;
use oclayer::Config;
use oclayer::trace::{self, Sampler};
use oclayer_benches::{ThreadCpuTime, oclayer_discarding, pipe_call};

const CALLS: u64 = 2_000_000;
const BLOCKS: usize = 10;

/// Nanoseconds per iteration of `f` run `CALLS` times, by this thread's CPU clock.
fn per_call(mut f: impl FnMut(u64)) -> f64 {
    let start = ThreadCpuTime.start();
    for i in 0..CALLS {
        f(i);
    }
    ThreadCpuTime.end(start) as f64 / CALLS as f64
}

fn main() {
    let _telemetry = oclayer_discarding(Config::builder().build().expect("the default config is valid"));
    trace::set_sampler(Sampler::AlwaysOff);
    let mut rows = [("call", String::new()), ("clock", String::new()), ("ilp", String::new())];
    for _ in 0..BLOCKS {
        let call = per_call(|i| {
            black_box(pipe_call(black_box(i)));
        });
        let clock = per_call(|_| {
            black_box(black_box(ClockReading::now()).elapsed());
        });
        let mut chains = [1u64, 2, 3, 4, 5, 6];
        let ilp = per_call(|i| {
            for _ in 0..8 {
                for (k, x) in chains.iter_mut().enumerate() {
                    *x = (*x ^ (*x << (k + 3))).wrapping_add(i);
                }
            }
            black_box(&chains);
        });
        for ((_, row), value) in rows.iter_mut().zip([call, clock, ilp]) {
            row.push_str(&format!(" {value:6.1}"));
        }
    }
    for (name, row) in rows {
        println!("{name:<5} ns:{row}");
    }
}
