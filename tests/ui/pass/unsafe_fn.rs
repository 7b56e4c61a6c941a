//! `unsafe fn` keeps its body's unsafe context requirements as written.
#[oclayer::trace_layer(pipe)]
unsafe fn read(ptr: *const u32) -> u32 {
    // SAFETY: the caller passes a valid pointer.
    unsafe { *ptr }
}

fn main() {
    let value = 7;
    // SAFETY: `value` outlives the call.
    assert_eq!(unsafe { read(&raw const value) }, 7);
}
