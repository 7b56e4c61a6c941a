#[oclayer::trace_layer(router, name, route = 5, err = true, request = "req", crate = "oclayer")]
fn every_form_wrong() {}

#[oclayer::trace_layer(router, route = "users/{id}", name = "")]
fn bad_values() {}

#[oclayer::trace_layer(pipe, fields(), skip_span, skip_measures)]
fn records_nothing() {}

#[oclayer::trace_layer(pipe, fields(user))]
fn field_without_value(user: u32) -> u32 {
    user
}

fn main() {}
