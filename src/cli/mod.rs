//! Subcommands of the `corral` CLI, one file each.

pub(crate) mod bench;
pub(crate) mod lifecycle;
