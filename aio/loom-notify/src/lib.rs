//! The notify protocol of corral-aio, compiled alone for its loom models.
#![allow(dead_code)]

#[path = "../../src/sync.rs"]
mod sync;

#[path = "../../src/notify.rs"]
pub mod notify;
