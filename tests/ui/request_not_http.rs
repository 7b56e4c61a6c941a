#[oclayer::trace_layer(router, request = id)]
fn handle(id: u64) -> u64 {
    id
}

fn main() {}
