#[oclayer::trace_layer(rooter)]
fn handle() {}

#[oclayer::trace_layer(Router, err)]
fn handle_upper() -> Result<(), String> {
    Ok(())
}

fn main() {}
