//! Replays every file of the fuzzers' corpus (`fuzz/corpus/<target>/`) through the same property checks
//! the fuzz targets run (`fuzz/src/lib.rs`, included here as a module), on stable, in `cargo test`: the
//! inputs that once reached new code, or once failed, keep being checked without nightly or libFuzzer.

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.map(|entry| entry.expect("a corpus entry").path()).collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, check) = checks::TARGETS
        .into_iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let files = corpus(target);
    assert!(!files.is_empty(), "the {target} corpus is empty: run `cargo fuzz cmin {target}` and commit it");
    for file in files {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        // Printed only when the check panics, to name the failing input.
        println!("{}", file.display());
        check(&data);
    }
}

#[test]
fn config_json_corpus_holds() {
    replay("config_json");
}

#[test]
fn propagation_corpus_holds() {
    replay("propagation");
}

#[test]
fn agent_messages_corpus_holds() {
    replay("agent_messages");
}

#[test]
fn every_target_is_replayed() {
    let replayed = ["config_json", "propagation", "agent_messages"];
    let targets: Vec<&str> = checks::TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(targets, replayed, "add a test above for each new fuzz target");
}
