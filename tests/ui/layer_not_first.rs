#[oclayer::trace_layer(name = "users", router)]
fn handle() {}

fn main() {}
