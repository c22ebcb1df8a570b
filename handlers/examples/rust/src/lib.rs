//! An Asya handler written in Rust, with no crates from outside.
//!
//! `shout` reads `{"text": "..."}` and returns the payload plus
//! `"shout": "<TEXT IN CAPITALS>!"` and `"chars": <number of characters>`:
//!
//! ```text
//! {"text": "hello"}  ->  {"text": "hello", "shout": "HELLO!", "chars": 5}
//! ```
//!
//! What it shows:
//! * the ABI declared by hand from `<asya/asya.h>` with `#[repr(C)]`: the
//!   stamp (`asya_module_magic`) and the call struct, with the host's `emit`
//!   and `set_error` callbacks;
//! * `#[no_mangle] extern "C"` exports (only these leave a cdylib);
//! * panics caught at the boundary with `std::panic::catch_unwind` and
//!   reported as `processing_error` (type `RustPanic`): `{"panic": true}`
//!   panics on purpose.  A panic must never unwind into the C runtime;
//! * out of memory reported as `oom_error`: `{"text": "ab", "repeat": N}`
//!   repeats the text N times using `try_reserve`, so a huge N fails cleanly
//!   instead of aborting;
//! * a bad payload reported as `processing_error` (type `ValueError`).
//!
//! JSON is handled by the small parser in `json.rs` (strings, numbers,
//! objects, arrays); a real handler may vendor a JSON crate instead.
//!
//! Try it:
//! ```text
//! echo '{"text": "hello"}' | build/bin/asya-invoke --payload \
//!     --handler build/lib/asya/examples/rust_shout.so:shout
//! ```

mod json;

// std::os::raw, not std::ffi: Debian 12's rustc (1.63) has the C types only there.
use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use json::Value;

// ---- the ABI, mirrored from include/asya/asya.h ---------------------------

/// `ASYA_ABI_MAJOR` of the header this mirrors.
const ASYA_ABI_MAJOR: u32 = 1;

/// `enum asya_status`.
const ASYA_OK: c_int = 0;
const ASYA_ERROR: c_int = 1;
const ASYA_OOM: c_int = 2;

/// `struct asya_magic`.
#[repr(C)]
pub struct AsyaMagic {
    size: u32,
    abi_major: u32,
    name: *const c_char,
    version: *const c_char,
}

// The stamp is immutable and its pointers are to static strings.
unsafe impl Sync for AsyaMagic {}

static MAGIC: AsyaMagic = AsyaMagic {
    size: std::mem::size_of::<AsyaMagic>() as u32,
    abi_major: ASYA_ABI_MAJOR,
    // NUL-terminated byte strings (c"..." literals need a newer rustc than Debian 12's).
    name: b"rust_shout\0".as_ptr() as *const c_char,
    version: b"1.0\0".as_ptr() as *const c_char,
};

/// `struct asya_call`: owned by the runtime, valid only during the call.
#[repr(C)]
pub struct AsyaCall {
    size: u32,
    mode: u32,
    input: *const c_char,
    input_len: usize,
    envelope: *const c_char,
    envelope_len: usize,
    emit: unsafe extern "C" fn(call: *mut AsyaCall, json: *const c_char, len: usize) -> c_int,
    set_error: unsafe extern "C" fn(call: *mut AsyaCall, ty: *const c_char, msg: *const c_char),
    host: *mut c_void,
}

/// The ABI stamp (what `ASYA_MODULE_MAGIC(...)` defines in C).
#[no_mangle]
pub extern "C" fn asya_module_magic() -> *const AsyaMagic {
    &MAGIC
}

// ---- safe wrappers ----------------------------------------------------------

/// How a handler body fails.
enum Failure {
    /// processing_error with a type and a message.
    Error(&'static str, String),
    /// oom_error with a message.
    Oom(String),
}

struct Call {
    raw: *mut AsyaCall,
}

impl Call {
    /// The input (payload, or envelope in envelope mode) as UTF-8 text.
    fn input(&self) -> Result<&str, Failure> {
        // SAFETY: the runtime passes input_len bytes of UTF-8 JSON that stay
        // valid until the handler returns.
        let bytes = unsafe {
            std::slice::from_raw_parts((*self.raw).input as *const u8, (*self.raw).input_len)
        };
        std::str::from_utf8(bytes)
            .map_err(|_| Failure::Error("ValueError", "input is not UTF-8".into()))
    }

    /// Hand one result to the runtime, which copies it.
    fn emit(&self, json: &str) -> Result<(), Failure> {
        // SAFETY: emit is the runtime's callback; it reads len bytes.
        let rc = unsafe { ((*self.raw).emit)(self.raw, json.as_ptr() as *const c_char, json.len()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(Failure::Error("ResultError", "the runtime rejected the result".into()))
        }
    }

    /// Record the error the handler is about to return.
    fn set_error(&self, ty: &str, msg: &str) {
        // Interior NULs cannot cross into C; drop them.
        let c = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
        let (ty, msg) = (c(ty), c(msg));
        // SAFETY: the runtime copies both strings before returning.
        unsafe { ((*self.raw).set_error)(self.raw, ty.as_ptr(), msg.as_ptr()) }
    }
}

/// Run body, turning its result, or a panic, into an Asya status.
fn guarded(raw: *mut AsyaCall, body: fn(&Call) -> Result<(), Failure>) -> c_int {
    let call = Call { raw };
    match catch_unwind(AssertUnwindSafe(|| body(&call))) {
        Ok(Ok(())) => ASYA_OK,
        Ok(Err(Failure::Error(ty, msg))) => {
            call.set_error(ty, &msg);
            ASYA_ERROR
        }
        Ok(Err(Failure::Oom(msg))) => {
            call.set_error("MemoryError", &msg);
            ASYA_OOM
        }
        Err(panic) => {
            // A panic payload is a &str or a String for panic!("...").
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".into());
            call.set_error("RustPanic", &msg);
            ASYA_ERROR
        }
    }
}

// ---- the handler -------------------------------------------------------------

fn shout_impl(call: &Call) -> Result<(), Failure> {
    let mut payload = json::parse(call.input()?)
        .map_err(|e| Failure::Error("ValueError", format!("payload: {e}")))?;
    if let Some(Value::Bool(true)) = payload.get("panic") {
        panic!("panicking on purpose, as the payload asked");
    }
    let text = match payload.get("text") {
        Some(Value::Str(s)) => s.clone(),
        _ => {
            return Err(Failure::Error(
                "ValueError",
                "payload must be an object with a string \"text\"".into(),
            ))
        }
    };
    let repeat = match payload.get("repeat") {
        Some(Value::Num(n)) => n.parse::<u64>().unwrap_or(1),
        _ => 1,
    };

    // try_reserve reports a failed allocation instead of aborting the process.
    let upper = text.to_uppercase();
    let total = (upper.len() as u64).saturating_mul(repeat).saturating_add(1);
    let mut shout = String::new();
    shout
        .try_reserve(usize::try_from(total).unwrap_or(usize::MAX))
        .map_err(|_| Failure::Oom(format!("cannot allocate {total} bytes for the shout")))?;
    for _ in 0..repeat {
        shout.push_str(&upper);
    }
    shout.push('!');

    let chars = text.chars().count();
    payload.set("shout", Value::Str(shout));
    payload.set("chars", Value::Num(chars.to_string()));
    call.emit(&payload.to_json())
}

/// `ASYA_HANDLER=<path>/rust_shout.so:shout`
///
/// # Safety
/// Called by asya-runtime with a valid `struct asya_call`.
#[no_mangle]
pub unsafe extern "C" fn shout(call: *mut AsyaCall) -> c_int {
    guarded(call, shout_impl)
}
