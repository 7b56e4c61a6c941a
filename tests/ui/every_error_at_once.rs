#[oclayer::trace_layer(rooter, nmae = "x", err, err)]
const fn everything_wrong() {}

fn main() {}
