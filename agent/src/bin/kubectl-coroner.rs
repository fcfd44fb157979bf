//! `kubectl coroner why pod/NAME`: the kubectl plugin (agent/src/plugin/, docs/plugin.md).

fn main() -> std::process::ExitCode {
    coroner::plugin::main()
}
