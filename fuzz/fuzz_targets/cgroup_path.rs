//! Memory cgroup paths → `classify` / `parse_container` (see `coroner::fuzzing::cgroup_path`).
//! The kernel hands paths over as bytes; the agent reads them lossily, as here.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    coroner::fuzzing::cgroup_path::check(&path);
    // The first bytes up to a NUL as a neutral prefix, the rest as a path.
    if let Some(split) = data.iter().position(|&b| b == 0) {
        let prefix: String = String::from_utf8_lossy(&data[..split])
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() && *c != 'k' || *c == '/')
            .collect();
        let rest = String::from_utf8_lossy(&data[split + 1..]);
        coroner::fuzzing::cgroup_path::check_prefix_invariance(&prefix, &rest);
    }
});
