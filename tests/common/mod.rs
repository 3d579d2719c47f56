//! Helpers the block-device tests share: the backends this kernel accepts, files,
//! patterns, O_DIRECT-aligned buffers, and running a coroutine to its end.
// Each test crate uses a part of them.
#![allow(dead_code)]

use corral::aio::block::{BackendKind, BlockDevice, OpenOptions};
use corral::aio::AioContext;
use corral::runtime::Coroutine;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Backends this kernel accepts; the others are skipped with a loud message.
pub(crate) fn backends(ctx: &Arc<AioContext>) -> Vec<BackendKind> {
    BackendKind::ALL
        .into_iter()
        .filter(|kind| match kind.create(ctx) {
            Ok(_) => true,
            Err(err) => {
                eprintln!("!!! SKIPPED backend {kind}: the kernel refuses it ({err})");
                false
            }
        })
        .collect()
}

pub(crate) fn is_null(kind: BackendKind) -> bool {
    matches!(kind, BackendKind::Null | BackendKind::NullBh)
}

/// Runs `f` in a coroutine and polls `ctx` until it returns.
pub(crate) fn block_on<R: Send + 'static>(
    ctx: &Arc<AioContext>,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let out = Arc::new(Mutex::new(None));
    let slot = out.clone();
    ctx.co_enter(Coroutine::new(move || *slot.lock().unwrap() = Some(f())));
    loop {
        if let Some(value) = out.lock().unwrap().take() {
            return value;
        }
        ctx.poll(true);
    }
}

pub(crate) fn temp_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, vec![0u8; len]).unwrap();
    path
}

pub(crate) fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A 4096-aligned buffer for O_DIRECT.
pub(crate) struct Aligned(Vec<u8>, usize, usize);
impl Aligned {
    pub(crate) fn new(data: &[u8]) -> Aligned {
        let mut raw = vec![0u8; data.len() + 4096];
        let skip = raw.as_ptr().align_offset(4096);
        raw[skip..skip + data.len()].copy_from_slice(data);
        Aligned(raw, skip, data.len())
    }
}
impl AsRef<[u8]> for Aligned {
    fn as_ref(&self) -> &[u8] {
        &self.0[self.1..self.1 + self.2]
    }
}
impl AsMut<[u8]> for Aligned {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0[self.1..self.1 + self.2]
    }
}

pub(crate) fn open(
    ctx: &Arc<AioContext>,
    path: &Path,
    backend: BackendKind,
    direct: bool,
) -> Option<BlockDevice> {
    let opts = OpenOptions {
        backend,
        write: true,
        direct,
        ..OpenOptions::default()
    };
    match BlockDevice::open(ctx, path, &opts) {
        Ok(dev) => Some(dev),
        Err(err) if direct => {
            eprintln!("!!! SKIPPED O_DIRECT on {}: {err}", path.display());
            None
        }
        Err(err) => panic!("open {}: {err}", path.display()),
    }
}
