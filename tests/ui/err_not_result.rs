#[oclayer::trace_layer(pipe, err)]
fn not_a_result() -> u32 {
    1
}

fn main() {}
