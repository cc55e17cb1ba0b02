//! The `supernet` command line: parse, run, print the error chain, set the exit code.
use clap::Parser;

fn main() {
    let cli = supernet::cli::Cli::parse();
    if let Err(err) = supernet::cli::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
