//! `corral_aio_context_t`: create, poll, notify, bottom halves, and running C
//! coroutines in a context.

use super::CCallback;
use crate::boundary::{fail, guard, set_error};
use crate::coroutine::{coroutine_of, CorralCo};
use corral_aio::AioContext;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The C type `corral_aio_context_t`: an `Arc<AioContext>` reference.
#[repr(C)]
#[derive(Debug)]
pub struct CorralAioContext {
    _opaque: [u8; 0],
}

/// The C bottom-half type `corral_bh_fn`.
pub type BhFn = unsafe extern "C" fn(opaque: *mut c_void);

/// Borrows the context behind a C pointer; `None` for NULL.
///
/// # Safety
///
/// * `ctx` is NULL or came from `corral_aio_context_new` and was not unref'd.
pub(crate) unsafe fn context<'a>(ctx: *const CorralAioContext) -> Option<&'a Arc<AioContext>> {
    if ctx.is_null() {
        return None;
    }
    // SAFETY:
    // * the pointer is `Box<Arc<AioContext>>::into_raw` (see new) and still
    //   owned by the C program (caller contract).
    Some(unsafe { &*ctx.cast::<Arc<AioContext>>() })
}

/// `corral_aio_context_new`: a new context, or NULL with errno.
#[no_mangle]
pub extern "C" fn corral_aio_context_new() -> *mut CorralAioContext {
    guard(|| match AioContext::new() {
        Ok(ctx) => Box::into_raw(Box::new(ctx)).cast(),
        Err(error) => {
            set_error(
                error.raw_os_error().unwrap_or(libc::EIO),
                &error.to_string(),
            );
            ptr::null_mut()
        }
    })
}

/// `corral_aio_context_unref`: drops the C program's reference.
///
/// # Safety
///
/// * `ctx` is NULL or came from `corral_aio_context_new`, unref'd only once.
#[no_mangle]
pub unsafe extern "C" fn corral_aio_context_unref(ctx: *mut CorralAioContext) {
    guard(|| {
        if !ctx.is_null() {
            // SAFETY: `ctx` is our Box (caller contract), given back once.
            drop(unsafe { Box::from_raw(ctx.cast::<Arc<AioContext>>()) });
        }
    })
}

/// `corral_aio_poll`: one iteration of the loop; true if it made progress.
///
/// # Safety
///
/// * `ctx` is NULL or a live context pointer.
#[no_mangle]
pub unsafe extern "C" fn corral_aio_poll(ctx: *mut CorralAioContext, blocking: bool) -> bool {
    // SAFETY: caller contract.
    guard(|| unsafe { context(ctx) }.is_some_and(|ctx| ctx.poll(blocking)))
}

/// `corral_aio_notify`: wakes a blocking poll of the context.
///
/// # Safety
///
/// * `ctx` is NULL or a live context pointer.
#[no_mangle]
pub unsafe extern "C" fn corral_aio_notify(ctx: *mut CorralAioContext) {
    // SAFETY: caller contract.
    guard(|| unsafe { context(ctx) }.map_or((), |ctx| ctx.notify()))
}

/// `corral_aio_bh_schedule`: runs `cb(opaque)` once, from the context's poll.
///
/// # Safety
///
/// * `ctx` is NULL or a live context pointer.
#[no_mangle]
pub unsafe extern "C" fn corral_aio_bh_schedule(
    ctx: *mut CorralAioContext,
    cb: Option<BhFn>,
    opaque: *mut c_void,
) -> i32 {
    guard(|| {
        // SAFETY: caller contract.
        let (Some(ctx), Some(func)) = (unsafe { context(ctx) }, cb) else {
            return fail(
                libc::EINVAL,
                "corral_aio_bh_schedule: NULL context or callback",
            );
        };
        let call = CCallback { func, opaque };
        ctx.bh_schedule_oneshot(move || call.run());
        0
    })
}

impl CCallback<BhFn> {
    fn run(self) {
        // SAFETY:
        // * the C program passed `func` with `opaque` to be called once.
        unsafe { (self.func)(self.opaque) }
    }
}

/// Checks a coroutine a context is asked to run: its runtime handle, or -errno.
fn schedulable(co: *const CorralCo, what: &str) -> Result<corral_runtime::Coroutine, i32> {
    let Some(handle) = coroutine_of(co).filter(|c| !c.is_terminated()) else {
        return Err(fail(
            libc::EINVAL,
            &format!("{what}: NULL or terminated coroutine"),
        ));
    };
    if handle.event_loop_words().scheduled.load(Ordering::Acquire) != 0 {
        return Err(fail(
            libc::EBUSY,
            &format!("{what}: coroutine already scheduled"),
        ));
    }
    Ok(handle)
}

/// `corral_aio_co_schedule`: the context enters `co` from its next poll
/// (QEMU's aio_co_schedule); any thread.
///
/// # Safety
///
/// * `ctx` is NULL or a live context pointer; `co` NULL or from corral_co_create.
#[no_mangle]
pub unsafe extern "C" fn corral_aio_co_schedule(
    ctx: *mut CorralAioContext,
    co: *mut CorralCo,
) -> i32 {
    guard(|| {
        // SAFETY: caller contract.
        let Some(ctx) = (unsafe { context(ctx) }) else {
            return fail(libc::EINVAL, "corral_aio_co_schedule: NULL context");
        };
        match schedulable(co, "corral_aio_co_schedule") {
            Ok(handle) => {
                ctx.co_schedule(handle);
                0
            }
            Err(code) => code,
        }
    })
}

/// `corral_aio_co_enter`: makes `ctx` the coroutine's home and runs it now when
/// called on the context's thread outside coroutines, else schedules it.
///
/// # Safety
///
/// * `ctx` is NULL or a live context pointer; `co` NULL or from corral_co_create.
#[no_mangle]
pub unsafe extern "C" fn corral_aio_co_enter(ctx: *mut CorralAioContext, co: *mut CorralCo) -> i32 {
    guard(|| {
        // SAFETY: caller contract.
        let Some(ctx) = (unsafe { context(ctx) }) else {
            return fail(libc::EINVAL, "corral_aio_co_enter: NULL context");
        };
        match schedulable(co, "corral_aio_co_enter") {
            Ok(handle) if handle.entered() => fail(libc::EBUSY, crate::coroutine::MSG_REENTERED),
            Ok(handle) => {
                ctx.co_enter(handle);
                0
            }
            Err(code) => code,
        }
    })
}
