#[oclayer::trace_layer(router)]
struct Handler;

#[oclayer::trace_layer(router)]
impl Handler {}

trait Service {
    #[oclayer::trace_layer(router)]
    fn call(&self);
}

fn main() {}
