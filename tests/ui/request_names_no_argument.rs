#[oclayer::trace_layer(router, request = req)]
fn handle(request: http::Request<()>, id: u64) -> u64 {
    let _ = request;
    id
}

#[oclayer::trace_layer(router, request = req)]
fn no_arguments() {}

fn main() {}
