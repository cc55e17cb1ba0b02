//! The `supernet` command line: parse, run, print the error once, set the exit code.

fn main() {
    // Fault-injection points for the crash tests, configured by the FAILPOINTS variable
    // (nothing happens without it).
    let scenario = fail::FailScenario::setup();
    let code = supernet::cli::main();
    scenario.teardown();
    std::process::exit(code);
}
