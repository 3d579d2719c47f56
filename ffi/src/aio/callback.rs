//! The callback face of `corral_blk_t` (`corral_blk_aio_*`): the request runs
//! in a pooled coroutine of the device's context and `cb(opaque, ret)` runs
//! there on completion, never before the submitting call returned.

use super::block::{device, iovecs, BlkCallback, CorralBlk};
use super::CCallback;
use crate::boundary::{fail, guard};
use std::ffi::c_void;
use std::io;

/// One C buffer, lent to the request until its callback runs.
struct CBuf {
    base: *mut u8,
    len: usize,
}

// SAFETY:
// * the C caller keeps the buffer valid and untouched until the callback ran
//   (the documented contract of the callback face), so the request may use it
//   on the context's thread.
unsafe impl Send for CBuf {}

impl AsRef<[u8]> for CBuf {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: a live C buffer of `len` bytes (see Send).
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }
}

impl AsMut<[u8]> for CBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: a live, writable C buffer of `len` bytes (see Send).
        unsafe { std::slice::from_raw_parts_mut(self.base, self.len) }
    }
}

impl CCallback<BlkCallback> {
    fn complete(self, res: io::Result<usize>) {
        let ret = match res {
            Ok(bytes) => bytes as isize,
            Err(error) => super::negative_errno(&error) as isize,
        };
        // SAFETY:
        // * the C program passed `func` with `opaque` to be called once with the result.
        unsafe { (self.func)(self.opaque, ret) }
    }
}

/// Which request a callback-face call submits.
#[derive(Clone, Copy)]
enum Kind {
    Read,
    Write,
}

fn submit(
    blk: *mut CorralBlk,
    kind: Kind,
    offset: u64,
    iov: *const libc::iovec,
    iovcnt: i32,
    cb: Option<BlkCallback>,
    opaque: *mut c_void,
) -> i32 {
    // SAFETY: caller contract of the exported functions.
    let (Some(dev), Some(func)) = (unsafe { device(blk) }, cb) else {
        return fail(libc::EINVAL, "corral_blk_aio_*: NULL device or callback");
    };
    // SAFETY: caller contract.
    let bufs: Vec<CBuf> = match unsafe { iovecs(iov, iovcnt) } {
        Ok(iov) => iov
            .iter()
            .map(|v| CBuf {
                base: v.iov_base.cast(),
                len: v.iov_len,
            })
            .collect(),
        Err(code) => return code,
    };
    let call = CCallback { func, opaque };
    match kind {
        Kind::Read => dev.aio_preadv(offset, bufs, move |_, res| call.complete(res)),
        Kind::Write => dev.aio_pwritev(offset, bufs, move |_, res| call.complete(res)),
    }
    0
}

/// `corral_blk_aio_preadv`: submits a read; 0, or -errno if it could not be submitted.
///
/// # Safety
///
/// * `blk` NULL or live; `iov` valid for `iovcnt` entries whose buffers stay
///   valid and writable until `cb` ran.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_aio_preadv(
    blk: *mut CorralBlk,
    offset: u64,
    iov: *const libc::iovec,
    iovcnt: i32,
    cb: Option<BlkCallback>,
    opaque: *mut c_void,
) -> i32 {
    guard(|| submit(blk, Kind::Read, offset, iov, iovcnt, cb, opaque))
}

/// `corral_blk_aio_pwritev`: submits a write; 0, or -errno if it could not be submitted.
///
/// # Safety
///
/// * `blk` NULL or live; `iov` valid for `iovcnt` entries whose buffers stay
///   valid until `cb` ran.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_aio_pwritev(
    blk: *mut CorralBlk,
    offset: u64,
    iov: *const libc::iovec,
    iovcnt: i32,
    cb: Option<BlkCallback>,
    opaque: *mut c_void,
) -> i32 {
    guard(|| submit(blk, Kind::Write, offset, iov, iovcnt, cb, opaque))
}

/// `corral_blk_aio_flush`: submits a flush; 0, or -errno if it could not be submitted.
///
/// # Safety
///
/// * `blk` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_aio_flush(
    blk: *mut CorralBlk,
    cb: Option<BlkCallback>,
    opaque: *mut c_void,
) -> i32 {
    guard(|| {
        // SAFETY: caller contract.
        let (Some(dev), Some(func)) = (unsafe { device(blk) }, cb) else {
            return fail(
                libc::EINVAL,
                "corral_blk_aio_flush: NULL device or callback",
            );
        };
        let call = CCallback { func, opaque };
        dev.aio_flush(move |res| call.complete(res.map(|()| 0)));
        0
    })
}
