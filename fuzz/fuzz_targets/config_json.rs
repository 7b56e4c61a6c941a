//! `cargo +nightly fuzz run config_json`: see `oclayer_fuzz::config_json` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oclayer_fuzz::config_json(data));
