#[oclayer::trace_layer(pipe)]
const fn answer() -> u32 {
    42
}

fn main() {}
