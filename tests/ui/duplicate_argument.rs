#[oclayer::trace_layer(router, err, name = "a", err, name = "b")]
fn twice() -> Result<(), String> {
    Ok(())
}

#[oclayer::trace_layer(router, backend)]
fn two_layers() {}

#[oclayer::trace_layer(pipe, fields(user = 1, user = 2))]
fn same_field() {}

fn main() {}
