#[oclayer::trace_layer]
fn no_arguments() {}

#[oclayer::trace_layer()]
fn empty_arguments() {}

#[oclayer::trace_layer(name = "users", err)]
fn starts_with_an_argument() -> Result<(), String> {
    Ok(())
}

fn main() {}
