//! Ring-buffer records → `KernelEvent::decode` → the correlator (see
//! `coroner::fuzzing::ring_buffer` for the input format and the promises checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    coroner::fuzzing::ring_buffer::check(data);
});
