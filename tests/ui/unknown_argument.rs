#[oclayer::trace_layer(router, nmae = "users")]
fn misspelled() {}

#[oclayer::trace_layer(pipe, level = "info", skip_all)]
fn from_tracing() {}

fn main() {}
