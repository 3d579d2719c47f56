//! `corral_blk_t`: a file on a context through a chosen backend, with the
//! coroutine face (`corral_blk_co_*`, yields until completion) and the
//! callback face (`corral_blk_aio_*`). Results: bytes or negative errno.

use super::context::{context, CorralAioContext};
use super::negative_errno;
use crate::boundary::{fail, guard, set_error};
use corral_aio::block::{BackendKind, BlockDevice, OpenOptions};
use std::ffi::{c_char, c_void, CStr, OsStr};
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::ffi::OsStrExt;

/// The C type `corral_blk_t`: a `Box<BlockDevice>`.
#[repr(C)]
#[derive(Debug)]
pub struct CorralBlk {
    _opaque: [u8; 0],
}

/// The C completion type `corral_blk_cb`: `ret` is bytes or -errno.
pub type BlkCallback = unsafe extern "C" fn(opaque: *mut c_void, ret: isize);

/// `CORRAL_BLK_WRITE`: open for writing too.
pub const CORRAL_BLK_WRITE: u32 = 1;
/// `CORRAL_BLK_CREATE`: create the file if missing (with WRITE).
pub const CORRAL_BLK_CREATE: u32 = 2;
/// `CORRAL_BLK_DIRECT`: O_DIRECT (aligned buffers, offsets and lengths).
pub const CORRAL_BLK_DIRECT: u32 = 4;

/// `corral_backend_t` values, in header order.
const BACKENDS: [BackendKind; 5] = [
    BackendKind::Null,
    BackendKind::NullBh,
    BackendKind::Threads,
    BackendKind::LinuxAio,
    BackendKind::IoUring,
];

fn backend_kind(backend: i32) -> Option<BackendKind> {
    usize::try_from(backend)
        .ok()
        .and_then(|i| BACKENDS.get(i).copied())
}

/// Borrows the device behind a C pointer.
///
/// # Safety
///
/// * `blk` is NULL or came from `corral_blk_open*` and was not closed.
pub(super) unsafe fn device<'a>(blk: *const CorralBlk) -> Option<&'a BlockDevice> {
    // SAFETY: the pointer is our Box (caller contract) or NULL.
    unsafe { blk.cast::<BlockDevice>().as_ref() }
}

/// Stores a new device in `*out`; 0 or -errno.
fn publish(opened: std::io::Result<BlockDevice>, out: *mut *mut CorralBlk) -> i32 {
    match opened {
        Ok(dev) => {
            // SAFETY: `out` is valid for a write (checked non-NULL by the callers).
            unsafe { *out = Box::into_raw(Box::new(dev)).cast() };
            0
        }
        Err(error) => {
            let code = negative_errno(&error);
            set_error(-code, &error.to_string());
            code
        }
    }
}

/// `corral_blk_open`: opens `path` on `ctx` with `backend`; 0 or -errno.
///
/// # Safety
///
/// * `ctx` is NULL or live; `path` NULL or a NUL-terminated string; `out`
///   NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_open(
    ctx: *mut CorralAioContext,
    path: *const c_char,
    backend: i32,
    flags: u32,
    out: *mut *mut CorralBlk,
) -> i32 {
    guard(|| {
        // SAFETY: caller contract.
        let ctx = unsafe { context(ctx) };
        let (Some(ctx), Some(kind), false, false) =
            (ctx, backend_kind(backend), path.is_null(), out.is_null())
        else {
            return fail(
                libc::EINVAL,
                "corral_blk_open: NULL argument or unknown backend",
            );
        };
        // SAFETY: `path` is a NUL-terminated string (caller contract).
        let path = OsStr::from_bytes(unsafe { CStr::from_ptr(path) }.to_bytes());
        let opts = OpenOptions {
            backend: kind,
            write: flags & CORRAL_BLK_WRITE != 0,
            create: flags & CORRAL_BLK_CREATE != 0,
            direct: flags & CORRAL_BLK_DIRECT != 0,
            ..OpenOptions::default()
        };
        publish(BlockDevice::open(ctx, path, &opts), out)
    })
}

/// `corral_blk_open_fd`: uses `fd` (kept open by the caller); 0 or -errno.
///
/// # Safety
///
/// * as `corral_blk_open`; `fd` stays open while the device lives.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_open_fd(
    ctx: *mut CorralAioContext,
    fd: i32,
    backend: i32,
    out: *mut *mut CorralBlk,
) -> i32 {
    guard(|| {
        // SAFETY: caller contract.
        let ctx = unsafe { context(ctx) };
        let (Some(ctx), Some(kind), false) = (ctx, backend_kind(backend), out.is_null()) else {
            return fail(
                libc::EINVAL,
                "corral_blk_open_fd: NULL argument or unknown backend",
            );
        };
        let opts = OpenOptions {
            backend: kind,
            ..OpenOptions::default()
        };
        publish(BlockDevice::from_raw_fd(ctx, fd, &opts), out)
    })
}

/// `corral_blk_close`: drops the device (callbacks still pending keep it alive).
///
/// # Safety
///
/// * `blk` is NULL or from `corral_blk_open*`, closed once.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_close(blk: *mut CorralBlk) {
    guard(|| {
        if !blk.is_null() {
            // SAFETY: our Box (caller contract), given back once.
            drop(unsafe { Box::from_raw(blk.cast::<BlockDevice>()) });
        }
    })
}

/// `corral_blk_drain`: polls the context until no request is in flight.
///
/// # Safety
///
/// * `blk` is NULL or a live device.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_drain(blk: *mut CorralBlk) -> i32 {
    guard(|| {
        // SAFETY: caller contract.
        let Some(dev) = (unsafe { device(blk) }) else {
            return fail(libc::EINVAL, "corral_blk_drain: NULL device");
        };
        dev.drain().map_or_else(|e| report(&e), |()| 0)
    })
}

#[cold]
fn report(error: &std::io::Error) -> i32 {
    let code = negative_errno(error);
    set_error(-code, &error.to_string());
    code
}

/// The C iovec array as a slice (empty for NULL or a count of 0).
///
/// # Safety
///
/// * `iov` points to `iovcnt` iovecs valid for the returned lifetime.
pub(super) unsafe fn iovecs<'a>(
    iov: *const libc::iovec,
    iovcnt: i32,
) -> Result<&'a [libc::iovec], i32> {
    let count = usize::try_from(iovcnt).map_err(|_| fail(libc::EINVAL, "negative iovcnt"))?;
    if count == 0 || iov.is_null() {
        return if count == 0 {
            Ok(&[])
        } else {
            Err(fail(libc::EINVAL, "NULL iov"))
        };
    }
    // SAFETY: caller contract.
    Ok(unsafe { std::slice::from_raw_parts(iov, count) })
}

/// Runs a coroutine-face request on the device and iovecs behind C pointers;
/// bytes or -errno.
///
/// # Safety
///
/// * `blk` NULL or live; `iov` valid for `iovcnt` entries.
unsafe fn co_request(
    blk: *mut CorralBlk,
    iov: *const libc::iovec,
    iovcnt: i32,
    request: impl FnOnce(&BlockDevice, &[libc::iovec]) -> std::io::Result<usize>,
) -> isize {
    // SAFETY: caller contract.
    let Some(dev) = (unsafe { device(blk) }) else {
        return fail(libc::EINVAL, "corral_blk_co_*: NULL device") as isize;
    };
    // SAFETY: caller contract.
    let iov = match unsafe { iovecs(iov, iovcnt) } {
        Ok(iov) => iov,
        Err(code) => return code as isize,
    };
    match request(dev, iov) {
        Ok(bytes) => bytes as isize,
        Err(error) => report(&error) as isize,
    }
}

/// `corral_blk_co_preadv`: reads at `offset` from inside a coroutine on the
/// context's thread; bytes read (short at end of file) or -errno.
///
/// # Safety
///
/// * `blk` NULL or live; `iov` valid for `iovcnt` entries whose buffers are writable.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_co_preadv(
    blk: *mut CorralBlk,
    offset: u64,
    iov: *const libc::iovec,
    iovcnt: i32,
) -> isize {
    // SAFETY: caller contract, passed on.
    guard(|| unsafe {
        co_request(blk, iov, iovcnt, |dev, iov| {
            // SAFETY:
            // * IoSliceMut is ABI-compatible with iovec on Unix (std documents
            //   it); the buffers are writable (caller contract) and the array
            //   itself is only read by the device.
            let bufs =
                std::slice::from_raw_parts_mut(iov.as_ptr() as *mut IoSliceMut<'_>, iov.len());
            dev.co_preadv(offset, bufs)
        })
    })
}

/// `corral_blk_co_pwritev`: writes at `offset` from inside a coroutine; bytes or -errno.
///
/// # Safety
///
/// * `blk` NULL or live; `iov` valid for `iovcnt` entries.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_co_pwritev(
    blk: *mut CorralBlk,
    offset: u64,
    iov: *const libc::iovec,
    iovcnt: i32,
) -> isize {
    // SAFETY: caller contract, passed on.
    guard(|| unsafe {
        co_request(blk, iov, iovcnt, |dev, iov| {
            // SAFETY: IoSlice is ABI-compatible with iovec on Unix (std documents it).
            let bufs = std::slice::from_raw_parts(iov.as_ptr().cast::<IoSlice<'_>>(), iov.len());
            dev.co_pwritev(offset, bufs)
        })
    })
}

/// `corral_blk_co_flush`: makes written data durable; 0 or -errno.
///
/// # Safety
///
/// * `blk` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn corral_blk_co_flush(blk: *mut CorralBlk) -> i32 {
    guard(|| {
        // SAFETY: caller contract.
        let Some(dev) = (unsafe { device(blk) }) else {
            return fail(libc::EINVAL, "corral_blk_co_flush: NULL device");
        };
        dev.co_flush().map_or_else(|e| report(&e), |()| 0)
    })
}
