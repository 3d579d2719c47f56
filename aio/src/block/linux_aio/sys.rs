//! Linux native AIO, spoken directly through `syscall(2)` (no libaio).
//!
//! Layouts from `include/uapi/linux/aio_abi.h`; `AioRing` from `fs/aio.c`, where the
//! kernel maps it at the address `io_setup` returns as the context id.

use std::io;

/// `IOCB_CMD_*` opcodes.
pub(crate) const IOCB_CMD_PREAD: u16 = 0;
pub(crate) const IOCB_CMD_PWRITE: u16 = 1;
pub(crate) const IOCB_CMD_FDSYNC: u16 = 3;
/// Completes when the file in `aio_fildes` has the events in `aio_buf` (one shot).
pub(crate) const IOCB_CMD_POLL: u16 = 5;
pub(crate) const IOCB_CMD_PREADV: u16 = 7;
pub(crate) const IOCB_CMD_PWRITEV: u16 = 8;
/// Signal `aio_resfd` (an eventfd) on completion.
pub(crate) const IOCB_FLAG_RESFD: u32 = 1;

/// `struct iocb` (little-endian field order of `aio_key`/`aio_rw_flags`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Iocb {
    pub(crate) aio_data: u64,
    pub(crate) aio_key: u32,
    pub(crate) aio_rw_flags: i32,
    pub(crate) aio_lio_opcode: u16,
    pub(crate) aio_reqprio: i16,
    pub(crate) aio_fildes: u32,
    pub(crate) aio_buf: u64,
    pub(crate) aio_nbytes: u64,
    pub(crate) aio_offset: i64,
    pub(crate) aio_reserved2: u64,
    pub(crate) aio_flags: u32,
    pub(crate) aio_resfd: u32,
}

#[cfg(not(target_endian = "little"))]
compile_error!("the iocb layout above is the little-endian one");

/// `struct io_event`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IoEvent {
    pub(crate) data: u64,
    pub(crate) obj: u64,
    pub(crate) res: i64,
    pub(crate) res2: i64,
}

/// Header of the completion ring the kernel shares with us (`struct aio_ring`).
#[repr(C)]
pub(crate) struct AioRing {
    pub(crate) id: u32,
    /// Number of `IoEvent` slots.
    pub(crate) nr: u32,
    /// Next event to consume: written by us (and by `io_getevents` in the kernel).
    pub(crate) head: u32,
    /// One past the last event: written by the kernel.
    pub(crate) tail: u32,
    pub(crate) magic: u32,
    pub(crate) compat_features: u32,
    pub(crate) incompat_features: u32,
    /// Offset of the event array from the header.
    pub(crate) header_length: u32,
}

/// Value of `AioRing::magic` when the ring is the layout above.
pub(crate) const AIO_RING_MAGIC: u32 = 0xa10a10a1;

/// An AIO context id (the ring's address).
pub(crate) type AioContextId = libc::c_ulong;

fn check(res: libc::c_long) -> io::Result<libc::c_long> {
    if res < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}

/// `io_setup(nr_events, &ctx)`.
pub(crate) fn io_setup(nr_events: u32) -> io::Result<AioContextId> {
    let mut id: AioContextId = 0;
    // SAFETY: `id` is a valid out-pointer for the kernel to fill.
    check(unsafe {
        libc::syscall(
            libc::SYS_io_setup,
            nr_events as libc::c_long,
            &mut id as *mut AioContextId,
        )
    })?;
    Ok(id)
}

/// `io_destroy(ctx)`: waits for in-flight requests, then unmaps the ring.
pub(crate) fn io_destroy(id: AioContextId) -> io::Result<()> {
    // SAFETY: no pointer is passed; an invalid id only yields EINVAL.
    check(unsafe { libc::syscall(libc::SYS_io_destroy, id) }).map(drop)
}

/// `io_submit(ctx, nr, iocbpp)`: returns how many of the first iocbs the kernel took.
///
/// # Safety
///
/// * `iocbs[..]` point to valid iocbs whose buffers stay valid until each completes.
pub(crate) unsafe fn io_submit(id: AioContextId, iocbs: &[*mut Iocb]) -> io::Result<usize> {
    // SAFETY: the array is valid for `iocbs.len()` entries; the iocbs are valid (caller).
    let res = unsafe {
        libc::syscall(
            libc::SYS_io_submit,
            id,
            iocbs.len() as libc::c_long,
            iocbs.as_ptr(),
        )
    };
    check(res).map(|n| n as usize)
}

/// `io_getevents(ctx, 0, events.len(), events, &{0, 0})`: takes completed events without waiting.
pub(crate) fn io_getevents_nowait(id: AioContextId, events: &mut [IoEvent]) -> io::Result<usize> {
    io_getevents(id, 0, events, 0)
}

/// `io_getevents(ctx, min_nr, events.len(), events, timeout)`: waits up to `timeout_ns`
/// (negative: no limit) for `min_nr` completed events and takes up to `events.len()`.
pub(crate) fn io_getevents(
    id: AioContextId,
    min_nr: usize,
    events: &mut [IoEvent],
    timeout_ns: i64,
) -> io::Result<usize> {
    let timeout = libc::timespec {
        tv_sec: (timeout_ns.max(0) / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns.max(0) % 1_000_000_000) as libc::c_long,
    };
    let timeout_ptr = if timeout_ns < 0 {
        std::ptr::null()
    } else {
        &timeout as *const libc::timespec
    };
    // SAFETY: `events` is writable for its length; `timeout_ptr` is null or a valid timespec.
    let res = unsafe {
        libc::syscall(
            libc::SYS_io_getevents,
            id,
            min_nr as libc::c_long,
            events.len() as libc::c_long,
            events.as_mut_ptr(),
            timeout_ptr,
        )
    };
    check(res).map(|n| n as usize)
}
