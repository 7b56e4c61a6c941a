//! Compile errors of `#[trace_layer]`, each pinned by a `.stderr` file (`TRYBUILD=overwrite` rewrites
//! them; review the diff by eye: the messages are part of the API). The `.stderr` files depend on the
//! compiler version.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
