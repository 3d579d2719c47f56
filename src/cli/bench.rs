//! `corral bench` (being written).

use std::io;

/// Options of `corral bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `corral bench`.
pub(crate) fn run(_args: Args) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "corral bench is not implemented yet"))
}
