#[oclayer::trace_layer(backend)]
extern "C" fn callback(x: u32) -> u32 {
    x
}

fn main() {}
