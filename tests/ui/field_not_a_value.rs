struct User;

#[oclayer::trace_layer(pipe, fields(user = user))]
fn handle(user: User) {
    let _ = user;
}

fn main() {}
