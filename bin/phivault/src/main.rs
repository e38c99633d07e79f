#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    phivault::cli::main()
}
