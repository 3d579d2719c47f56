//! Subcommands of the `corral` CLI, one file each.

pub(crate) mod bench;
mod block_shuffle;
pub(crate) mod lifecycle;
