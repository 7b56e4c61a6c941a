//! `cargo +nightly fuzz run agent_messages`: see `oclayer_fuzz::agent_messages` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oclayer_fuzz::agent_messages(data));
