//! The `relayctl` binary: everything lives in the library so tests can call it directly.

fn main() -> std::process::ExitCode {
    relayctl::run(std::env::args_os())
}
