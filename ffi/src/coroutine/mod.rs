//! The coroutine part of the C ABI: create, enter, yield, self,
//! in-coroutine, entered, terminated, pool counters.

use crate::boundary::{abort_with, fail, guard, set_error};
use corral_runtime::c_abi::{self, Refusal};
use corral_runtime::Coroutine;
use std::arch::naked_asm;
use std::ffi::c_void;
use std::ptr::{self, NonNull};

/// The C type `corral_co_t`: opaque, only ever handled by pointer.
///
/// The pointer is the runtime's packed handle ([`Coroutine::into_raw`]): the
/// coroutine's never-freed header address with the low bits of its
/// generation in spare bits. So it is the same pointer for the coroutine's
/// whole life (`corral_co_self()` equals what `corral_co_create()` returned),
/// costs no allocation, and a stale pointer is recognised instead of naming
/// whichever coroutine reused the slot.
#[repr(C)]
#[derive(Debug)]
pub struct CorralCo {
    _opaque: [u8; 0],
}

/// The C entry function type `corral_co_entry_fn`.
pub type EntryFn = unsafe extern "C" fn(opaque: *mut c_void);

/// A C entry with its argument, moved into the coroutine (16 bytes: stored
/// inline in the coroutine's slot, no allocation).
struct CEntry {
    entry: EntryFn,
    opaque: *mut c_void,
}

// SAFETY:
// * the opaque pointer is the C program's; handing it to the coroutine, which
//   may run on another thread, is what the C caller asked for.
unsafe impl Send for CEntry {}

impl CEntry {
    fn call(self) {
        // SAFETY:
        // * `entry` is the C function the caller of corral_co_create passed
        //   with `opaque`; calling it with that argument is the documented
        //   contract. A C function cannot unwind into us.
        unsafe { (self.entry)(self.opaque) }
    }
}

fn to_handle(co: Coroutine) -> *mut CorralCo {
    co.into_raw().as_ptr().cast()
}

/// The runtime handle behind a C pointer; `None` for NULL.
pub(crate) fn coroutine_of(handle: *const CorralCo) -> Option<Coroutine> {
    let raw = NonNull::new(handle.cast_mut())?;
    // SAFETY:
    // * every non-NULL corral_co_t * comes from `to_handle` (the C contract,
    //   as for any opaque pointer); headers are never freed and a stale
    //   generation is detected by the runtime.
    Some(unsafe { Coroutine::from_raw(raw.cast()) })
}

/// Message of `-EBUSY` from `corral_co_enter`.
pub const MSG_REENTERED: &str = "coroutine re-entered recursively";
/// Message of `-EINVAL` from `corral_co_enter` for NULL.
pub const MSG_NULL: &str = "coroutine is NULL";
/// Message of `-EINVAL` from `corral_co_enter`.
pub const MSG_TERMINATED: &str = "coroutine entered after it terminated";
/// Message of `-EPERM` from `corral_co_yield`.
pub const MSG_YIELD_OUTSIDE: &str = "yield outside a coroutine";

/// `corral_co_create`: a pooled coroutine that will run `entry(opaque)`, or
/// NULL with errno (ENOMEM: no stack; EINVAL: no entry).
#[no_mangle]
pub extern "C" fn corral_co_create(entry: Option<EntryFn>, opaque: *mut c_void) -> *mut CorralCo {
    guard(|| {
        create(entry, opaque, |c_entry| {
            Coroutine::try_new(move || c_entry.call())
        })
    })
}

/// `corral_co_create_sized`: as `corral_co_create` with `stack_size` usable
/// bytes of stack (0: the default); pooled apart from other sizes.
#[no_mangle]
pub extern "C" fn corral_co_create_sized(
    entry: Option<EntryFn>,
    opaque: *mut c_void,
    stack_size: usize,
) -> *mut CorralCo {
    guard(|| {
        if stack_size == 0 {
            return create(entry, opaque, |c_entry| {
                Coroutine::try_new(move || c_entry.call())
            });
        }
        if stack_size > MAX_STACK_SIZE {
            set_error(
                libc::EINVAL,
                "corral_co_create_sized: stack_size above 1 GiB",
            );
            return ptr::null_mut();
        }
        create(entry, opaque, |c_entry| {
            Coroutine::builder()
                .stack_size(stack_size)
                .try_spawn(move || c_entry.call())
        })
    })
}

/// Largest stack `corral_co_create_sized` accepts (a guard against sizes that
/// overflow page rounding; real coroutines use far less).
const MAX_STACK_SIZE: usize = 1 << 30;

/// Creates a coroutine running a C entry with `spawn`; the handle or NULL + errno.
fn create(
    entry: Option<EntryFn>,
    opaque: *mut c_void,
    spawn: impl FnOnce(CEntry) -> std::io::Result<Coroutine>,
) -> *mut CorralCo {
    let Some(entry) = entry else {
        return null_entry();
    };
    match spawn(CEntry { entry, opaque }) {
        Ok(co) => to_handle(co),
        Err(error) => create_failed(error),
    }
}

/// A create with a NULL entry: EINVAL.
#[cold]
#[inline(never)]
fn null_entry() -> *mut CorralCo {
    set_error(libc::EINVAL, "corral_co_create: entry is NULL");
    ptr::null_mut()
}

/// A refused create: errno and message from the runtime's error. Out of
/// line, so the common path keeps no error state in its frame.
#[cold]
#[inline(never)]
fn create_failed(error: std::io::Error) -> *mut CorralCo {
    set_error(
        error.raw_os_error().unwrap_or(libc::ENOMEM),
        &error.to_string(),
    );
    ptr::null_mut()
}

// Enter and yield are the runtime's assembly entry points (`c_abi`), which
// leave their frames without a `ret` so that a round trip from C costs no
// mispredicted return. Each exported function below is two instructions:
// load its refusal handler, jump to the runtime's entry (no frame of its
// own). The handlers run only on misuse and map it to errno and message.

/// The body of an exported enter or yield: load the refusal handler's
/// address into the runtime entry's handler register, jump to the entry.
macro_rules! jump_with_handler {
    ($reg:literal, $handler:path, $entry:path) => {
        naked_asm!(
            concat!("lea ", $reg, ", [rip + {handler}]"),
            "jmp {entry}",
            handler = sym $handler,
            entry = sym $entry,
        )
    };
}

/// errno and message of a refusal.
fn refusal_error(refusal: Refusal) -> (i32, &'static str) {
    match refusal {
        Refusal::Null => (libc::EINVAL, MSG_NULL),
        Refusal::Running => (libc::EBUSY, MSG_REENTERED),
        Refusal::Terminated => (libc::EINVAL, MSG_TERMINATED),
        Refusal::NotInCoroutine => (libc::EPERM, MSG_YIELD_OUTSIDE),
    }
}

/// Refusal handler of `corral_co_enter` and `corral_co_yield`: `-errno`.
extern "C" fn refused_errno(refusal: Refusal) -> i32 {
    let (errno, message) = refusal_error(refusal);
    fail(errno, message)
}

/// Refusal handler of the `_or_abort` forms: the clear abort.
extern "C" fn refused_abort(refusal: Refusal) -> i32 {
    abort_with(refusal_error(refusal).1)
}

/// `corral_co_enter`: runs the coroutine until it yields or terminates.
/// 0, `-EBUSY` (running) or `-EINVAL` (NULL, terminated).
///
/// # Safety
///
/// * `co` is NULL or a pointer returned by `corral_co_create`.
#[no_mangle]
#[unsafe(naked)]
pub unsafe extern "C" fn corral_co_enter(co: *mut CorralCo) -> i32 {
    jump_with_handler!("rsi", refused_errno, c_abi::enter)
}

/// `corral_co_enter_or_abort`: as `corral_co_enter`, aborting on misuse.
///
/// # Safety
///
/// * `co` is NULL or a pointer returned by `corral_co_create`.
#[no_mangle]
#[unsafe(naked)]
pub unsafe extern "C" fn corral_co_enter_or_abort(co: *mut CorralCo) {
    jump_with_handler!("rsi", refused_abort, c_abi::enter)
}

/// `corral_co_yield`: 0 once resumed, `-EPERM` outside a coroutine.
#[no_mangle]
#[unsafe(naked)]
pub extern "C" fn corral_co_yield() -> i32 {
    jump_with_handler!("rdi", refused_errno, c_abi::yield_)
}

/// `corral_co_yield_or_abort`: as `corral_co_yield`, aborting outside a coroutine.
#[no_mangle]
#[unsafe(naked)]
pub extern "C" fn corral_co_yield_or_abort() {
    jump_with_handler!("rdi", refused_abort, c_abi::yield_)
}

/// `corral_co_self`: the running coroutine, NULL outside coroutines.
#[no_mangle]
pub extern "C" fn corral_co_self() -> *mut CorralCo {
    guard(|| corral_runtime::current().map_or(ptr::null_mut(), to_handle))
}

/// `corral_in_coroutine`: true inside any coroutine.
#[no_mangle]
pub extern "C" fn corral_in_coroutine() -> bool {
    guard(corral_runtime::in_coroutine)
}

/// `corral_co_entered`: running, or suspended in a nested enter.
///
/// # Safety
///
/// * `co` is NULL or a pointer returned by `corral_co_create`.
#[no_mangle]
pub unsafe extern "C" fn corral_co_entered(co: *const CorralCo) -> bool {
    guard(|| coroutine_of(co).is_some_and(|co| co.entered()))
}

/// `corral_co_is_terminated`: its entry returned (true for stale handles).
///
/// # Safety
///
/// * `co` is NULL or a pointer returned by `corral_co_create`.
#[no_mangle]
pub unsafe extern "C" fn corral_co_is_terminated(co: *const CorralCo) -> bool {
    guard(|| coroutine_of(co).is_none_or(|co| co.is_terminated()))
}
