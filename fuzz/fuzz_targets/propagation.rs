//! `cargo +nightly fuzz run propagation`: see `oclayer_fuzz::propagation` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oclayer_fuzz::propagation(data));
