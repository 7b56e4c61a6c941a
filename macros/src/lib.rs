//! The `#[trace_layer]` attribute of oclayer. Users reach it through the `oclayer` facade.
