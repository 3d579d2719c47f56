//! `corral lifecycle` (being written).

use std::io;

/// Options of `corral lifecycle`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `corral lifecycle`.
pub(crate) fn run(_args: Args) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "corral lifecycle is not implemented yet"))
}
