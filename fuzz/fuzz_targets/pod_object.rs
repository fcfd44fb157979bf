//! One API object's bytes → `Pod` → the agent's view of it → the pod index (see
//! `coroner::kube::object_checks`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    coroner::fuzzing::pod_object::check(data);
});
