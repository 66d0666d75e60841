use std::process::ExitCode;

fn main() -> ExitCode {
    seldesk::cli::main()
}
