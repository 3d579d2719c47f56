//! The `corral` command line: measures the whole stack.
//!
//! Each subcommand lives in its own file under `src/cli/`.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "corral",
    version,
    about = "Coroutine I/O runtime: benchmarks and figures"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive block requests through the whole stack (like `qemu-img bench`).
    Bench(cli::bench::Args),
    /// Measure the coroutine lifecycle: pooled, unpooled, malloc baseline.
    Lifecycle(cli::lifecycle::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => cli::bench::run(args),
        Command::Lifecycle(args) => cli::lifecycle::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("corral: {err}");
            ExitCode::FAILURE
        }
    }
}
