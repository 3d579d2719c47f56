//! corral: coroutine I/O for storage engines (facade over the workspace crates).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub use corral_aio as aio;
pub use corral_pool as pool;
pub use corral_runtime as runtime;
