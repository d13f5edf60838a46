//! The `dbx` binary (commands arrive with the CLI issue).

fn main() {
    eprintln!("dbx: no commands yet");
    std::process::exit(2);
}
