//! [`BlockDevice`]: a file bound to an `AioContext`, with the coroutine and AIO faces.

use super::aio_face::LocalStarts;
use super::bound::ThreadBound;
use super::error::{invalid, result_from_raw, syscall};
use super::fault::{FaultBackend, FaultConfig};
use super::request::{Op, Request};
use super::{glue, Backend, BackendKind};
use crate::{AioContext, Bh};
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Where the request and its coroutine come from (the bench compares the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllocMode {
    /// Request on the coroutine's stack, AIO-face coroutines from the pool: no heap
    /// allocation per request.
    #[default]
    Pooled,
    /// A heap-allocated request and a fresh, unpooled coroutine per AIO-face request.
    Heap,
}

/// How to open a device.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The backend doing the I/O.
    pub backend: BackendKind,
    /// Open for writing too (reads are always allowed).
    pub write: bool,
    /// Create the file if it is missing (needs `write`).
    pub create: bool,
    /// `O_DIRECT`: buffers, offsets and lengths must be aligned (see [`BlockDevice::alignment`]).
    pub direct: bool,
    /// Wrap the backend in the fault injector.
    pub fault: Option<FaultConfig>,
    /// Pooled or heap requests.
    pub alloc: AllocMode,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            backend: BackendKind::Threads,
            write: false,
            create: false,
            direct: false,
            fault: None,
            alloc: AllocMode::Pooled,
        }
    }
}

/// A file bound to one `AioContext`; cheap to clone (shared handle).
///
/// The coroutine face must be called from coroutines running on the context's thread;
/// the AIO face from any thread.
#[derive(Debug, Clone)]
pub struct BlockDevice {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) ctx: Arc<AioContext>,
    /// Keeps the file open when the device owns it.
    _file: Option<File>,
    fd: RawFd,
    readable: bool,
    writable: bool,
    /// `(memory, offset)` alignment for O_DIRECT, `None` for buffered I/O.
    direct: Option<(usize, usize)>,
    pub(super) alloc: AllocMode,
    backend: Box<dyn Backend>,
    /// AIO-face requests submitted on the context thread: count, start queue, keepalive.
    pub(super) local: ThreadBound<LocalStarts>,
    /// AIO-face requests submitted from other threads and not called back yet.
    pub(super) remote_pending: AtomicUsize,
    /// Coroutine-face requests whose coroutine has not picked up the result yet. Written
    /// only on the context's thread (checked in `run`), with plain loads and stores.
    co_requests: AtomicUsize,
    /// Starts the coroutines queued in `local`.
    pub(super) start_bh: OnceLock<Bh>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Bottom halves live until deleted: this one would otherwise outlive the device.
        if let Some(bh) = self.start_bh.get() {
            bh.delete();
        }
    }
}

/// At most this many buffers per request (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

impl BlockDevice {
    /// Opens `path` on `ctx`'s thread (the calling thread must be the one running `ctx`).
    pub fn open(
        ctx: &Arc<AioContext>,
        path: impl AsRef<Path>,
        opts: &OpenOptions,
    ) -> io::Result<BlockDevice> {
        let mut flags = 0;
        if opts.direct {
            flags |= libc::O_DIRECT;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(opts.write)
            .create(opts.create && opts.write)
            .custom_flags(flags)
            .open(path)?;
        let fd = file.as_raw_fd();
        Self::build(ctx, Some(file), fd, opts)
    }

    /// Uses an fd the caller keeps open for as long as the device lives (like QEMU's
    /// `file.fd=`); access mode and `O_DIRECT` are read from the fd. An invalid fd is
    /// refused here with `EBADF`. `opts.write`/`direct`/`create` are ignored.
    pub fn from_raw_fd(
        ctx: &Arc<AioContext>,
        fd: RawFd,
        opts: &OpenOptions,
    ) -> io::Result<BlockDevice> {
        Self::build(ctx, None, fd, opts)
    }

    fn build(
        ctx: &Arc<AioContext>,
        file: Option<File>,
        fd: RawFd,
        opts: &OpenOptions,
    ) -> io::Result<BlockDevice> {
        let flags = syscall!(fcntl(fd, libc::F_GETFL)).map_err(|err| match err.raw_os_error() {
            Some(libc::EBADF) => invalid(libc::EBADF, "bad file descriptor given to BlockDevice"),
            _ => err,
        })?;
        let mode = flags & libc::O_ACCMODE;
        let direct = if flags & libc::O_DIRECT != 0 {
            Some(dio_alignment(fd))
        } else {
            None
        };
        let mut backend = opts.backend.create(ctx)?;
        if let Some(config) = opts.fault {
            backend = Box::new(FaultBackend::new(backend, config));
        }
        Ok(BlockDevice {
            inner: Arc::new(Inner {
                ctx: ctx.clone(),
                _file: file,
                fd,
                readable: mode != libc::O_WRONLY,
                writable: mode != libc::O_RDONLY,
                direct,
                alloc: opts.alloc,
                backend,
                local: ThreadBound::new(LocalStarts::default()),
                remote_pending: AtomicUsize::new(0),
                co_requests: AtomicUsize::new(0),
                start_bh: OnceLock::new(),
            }),
        })
    }

    /// The context the device belongs to.
    pub fn context(&self) -> &Arc<AioContext> {
        &self.inner.ctx
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// The backend's counters (system calls per request and such).
    pub fn backend_stats(&self) -> super::BackendStats {
        self.inner.backend.stats()
    }

    /// `(memory, offset and length)` alignment O_DIRECT requests need; `None` when buffered.
    pub fn alignment(&self) -> Option<(usize, usize)> {
        self.inner.direct
    }

    /// Size of the file in bytes.
    pub fn size(&self) -> io::Result<u64> {
        let end = syscall!(lseek(self.inner.fd, 0, libc::SEEK_END))?;
        Ok(end as u64)
    }

    /// Requests in flight: zero exactly when none is. A coroutine-face request counts
    /// until its coroutine resumed with the result, an AIO-face one until its callback
    /// returned; while busy a request may be counted twice (by its backend and by its
    /// waiting coroutine), so read it as "how busy", not as an exact count. Other threads
    /// see only the AIO-face requests they submitted.
    pub fn in_flight(&self) -> usize {
        let local = if self.inner.local.is_owner() {
            self.inner.local.with(|l| l.pending)
                + self.inner.co_requests.load(Ordering::Relaxed)
                + self.inner.backend.in_flight()
        } else {
            0
        };
        local + self.inner.remote_pending.load(Ordering::Acquire)
    }

    /// Runs the context until every in-flight request completed (AIO callbacks included).
    /// Call it on the context's thread, outside coroutines.
    pub fn drain(&self) -> io::Result<()> {
        if !self.inner.local.is_owner() {
            return Err(invalid(
                libc::EPERM,
                "BlockDevice::drain called outside its AioContext thread",
            ));
        }
        if corral_runtime::in_coroutine() {
            return Err(invalid(
                libc::EPERM,
                "BlockDevice::drain called inside a coroutine",
            ));
        }
        while self.in_flight() > 0 {
            self.inner.ctx.poll(true);
        }
        Ok(())
    }

    /// Queues submissions until the matching [`unplug`](Self::unplug) (nests).
    pub fn plug(&self) {
        self.inner.backend.plug();
    }

    /// Sends what was queued since the outermost [`plug`](Self::plug) in one system call.
    pub fn unplug(&self) {
        self.inner.backend.unplug();
    }

    // ----- coroutine face -----

    /// Reads into `bufs` at `offset`; returns the bytes read (short at end of file).
    pub fn co_preadv(&self, offset: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.run(Op::Read, offset, bufs.as_ptr().cast(), bufs.len(), len)
    }

    /// Writes `bufs` at `offset`; returns the bytes written.
    pub fn co_pwritev(&self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.run(Op::Write, offset, bufs.as_ptr().cast(), bufs.len(), len)
    }

    /// Reads into `buf` at `offset`; returns the bytes read (short at end of file).
    pub fn co_pread(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.co_preadv(offset, &mut [IoSliceMut::new(buf)])
    }

    /// Writes `buf` at `offset`; returns the bytes written.
    pub fn co_pwrite(&self, offset: u64, buf: &[u8]) -> io::Result<usize> {
        self.co_pwritev(offset, &[IoSlice::new(buf)])
    }

    /// Makes written data durable (`fdatasync`).
    pub fn co_flush(&self) -> io::Result<()> {
        self.run(Op::Flush, 0, std::ptr::null(), 0, 0).map(drop)
    }

    fn run(
        &self,
        op: Op,
        offset: u64,
        iov: *const libc::iovec,
        iovcnt: usize,
        len: usize,
    ) -> io::Result<usize> {
        let Some(co) = glue::current() else {
            return Err(invalid(
                libc::EPERM,
                "co_* block request made outside a coroutine",
            ));
        };
        if !self.inner.local.is_owner() {
            return Err(invalid(
                libc::EPERM,
                "co_* block request made outside the device's AioContext thread",
            ));
        }
        self.check(op, offset, iov, iovcnt, len)?;
        if len == 0 && op != Op::Flush {
            return Ok(0);
        }
        let fd = self.inner.fd;
        match self.inner.alloc {
            AllocMode::Pooled => {
                let mut req = Request::new(op, fd, offset, iov, iovcnt, len, Some(co));
                self.submit_and_wait(NonNull::from(&mut req))
            }
            AllocMode::Heap => {
                let mut req = Box::new(Request::new(op, fd, offset, iov, iovcnt, len, Some(co)));
                self.submit_and_wait(NonNull::from(&mut *req))
            }
        }
    }

    fn submit_and_wait(&self, req: NonNull<Request>) -> io::Result<usize> {
        // SAFETY: `req` is owned by this frame, which neither returns, moves nor frees it
        // before its result is in (read only through `&`); we are the waiting coroutine on
        // the context thread (checked in `run`).
        unsafe { self.inner.backend.submit(req) };
        // SAFETY: `req` is valid (see above); `result` is a `Cell` read on this thread.
        if let Some(res) = unsafe { req.as_ref() }.result() {
            return result_from_raw(res); // completed inside submit: never in flight
        }
        // Counted until this coroutine has its result, like QEMU's in-flight counter, so
        // `drain` also waits for coroutines woken but not yet resumed. Nothing ran since
        // `submit`, so the count covers the request from the moment anyone can see it.
        let count = &self.inner.co_requests;
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        loop {
            glue::suspend();
            // SAFETY: as above.
            if let Some(res) = unsafe { req.as_ref() }.result() {
                count.store(count.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
                return result_from_raw(res);
            }
        }
    }

    /// Rejects bad input with a clear message and the errno the kernel would give.
    fn check(
        &self,
        op: Op,
        offset: u64,
        iov: *const libc::iovec,
        iovcnt: usize,
        len: usize,
    ) -> io::Result<()> {
        match op {
            Op::Read if !self.inner.readable => {
                return Err(invalid(libc::EBADF, "device is not open for reading"))
            }
            Op::Write if !self.inner.writable => {
                return Err(invalid(libc::EBADF, "device is open read-only"))
            }
            Op::Flush => return Ok(()),
            _ => {}
        }
        if iovcnt > IOV_MAX {
            return Err(invalid(
                libc::EINVAL,
                "more than IOV_MAX (1024) buffers in one request",
            ));
        }
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(invalid(
                libc::EINVAL,
                "offset + length out of range (beyond i64::MAX)",
            ));
        }
        if let Some((mem_align, off_align)) = self.inner.direct {
            if !offset.is_multiple_of(off_align as u64) {
                return Err(invalid(
                    libc::EINVAL,
                    "O_DIRECT offset is not aligned to the device's block size",
                ));
            }
            // SAFETY:
            // * `iov` and `iovcnt` come from a live slice of `IoSlice`/`IoSliceMut` (the
            //   callers above), which have the layout of `iovec`.
            let bufs = unsafe { std::slice::from_raw_parts(iov, iovcnt) };
            for buf in bufs {
                if !(buf.iov_base as usize).is_multiple_of(mem_align) {
                    return Err(invalid(
                        libc::EINVAL,
                        "O_DIRECT buffer address is not aligned to the device's memory alignment",
                    ));
                }
                if buf.iov_len % off_align != 0 {
                    return Err(invalid(
                        libc::EINVAL,
                        "O_DIRECT buffer length is not a multiple of the device's block size",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// O_DIRECT alignment of `fd`: `statx(STATX_DIOALIGN)` where the kernel and file system
/// report it, else 4096 (safe on every common device).
fn dio_alignment(fd: RawFd) -> (usize, usize) {
    const STATX_DIOALIGN: u32 = 0x2000;
    // SAFETY: `statx` is plain data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let res = syscall!(statx(
        fd,
        c"".as_ptr(),
        libc::AT_EMPTY_PATH,
        STATX_DIOALIGN,
        &mut stx
    ));
    if res.is_ok()
        && stx.stx_mask & STATX_DIOALIGN != 0
        && stx.stx_dio_mem_align != 0
        && stx.stx_dio_offset_align != 0
    {
        (
            stx.stx_dio_mem_align as usize,
            stx.stx_dio_offset_align as usize,
        )
    } else {
        (4096, 4096)
    }
}
