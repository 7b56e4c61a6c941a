struct Opaque;

#[oclayer::trace_layer(backend, err)]
async fn opaque_error() -> Result<u32, Opaque> {
    Err(Opaque)
}

fn main() {}
