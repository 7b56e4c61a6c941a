#[oclayer::trace_layer(pipe, err)]
fn no_return_type() {}

#[oclayer::trace_layer(pipe, err)]
async fn async_unit() -> () {}

fn main() {}
