//! Task functions that travel to a worker without a registration step.
//!
//! Every worker runs this very program: a forked one is a copy of this
//! process, a spawned one executes `/proc/self/exe` (the same file, even
//! if its path was replaced). So a plain `fn` is found in a worker at the
//! same distance from any other function of the program, whatever address
//! the program was loaded at: a [`FnRef`] carries the distance of the task
//! function and of the *shim* (the generic function, instantiated for the
//! task's argument and result types, that decodes the arguments, calls the
//! task function and encodes its result) from the address the loader put
//! the executable at (its `dlpi_addr`; a function of this crate would not
//! do as the origin where the crate is a shared library, loaded apart from
//! the program). The procspawn crate sends functions in a similar way.
//!
//! A worker calls what a `FnRef` names only after two checks:
//! - both addresses fall in the executable segments of the program's own
//!   file (from `dl_iterate_phdr`): a function of a library loaded at run
//!   time is refused when it is submitted ([`Error::FunctionNotInProgram`]);
//! - a tag, a keyed hash of the two distances under the pool's random key,
//!   matches. The key lives in the private memory of the pool's processes
//!   (a forked worker's copy, a spawned worker's boot record), never in
//!   shared memory, so a process that overwrites a queue's bytes cannot
//!   make a worker call an address of its choosing; it can only make a
//!   task fail with [`TaskError::BadFunction`]. The hash is std's SipHash
//!   with the key as a prefix: a check against accidents and against a
//!   scribbler without the key, not a MAC against a peer that can read the
//!   pool's memory (such a peer could do anything to us anyway).

use std::any::Any;
use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};
use std::ops::Range;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, TaskError};


/// What a shim gets besides its input: the worker's cache of the last
/// decoded context of [`ranges`] tasks.
#[derive(Default)]
pub(crate) struct WorkerCx {
    context: Option<(u64, Box<dyn Any>)>,
    /// The function reference whose tag and addresses were checked last.
    checked: Option<FnRef>,
}

/// A shim: decodes the input, calls the task function (its address is the
/// first argument), encodes the `Vec` of results.
///
/// # Safety
///
/// The address must be that of a function of the type the shim was
/// instantiated for, which the [`FnRef`] pairing them guarantees.
pub(crate) type Shim = unsafe fn(usize, &[u8], &mut WorkerCx) -> Result<Vec<u8>, TaskError>;

/// A task function as it travels: the shim's and the function's distance
/// from the program's load address, and their tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FnRef {
    shim: i64,
    func: i64,
    tag: u64,
}

/// The pool's key for [`FnRef`] tags.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Key([u64; 2]);

impl Key {
    /// A fresh random key (std's per-process random hash keys, mixed with
    /// the pid and the time).
    pub(crate) fn random() -> Key {
        let s = RandomState::new();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Key([
            s.hash_one((1u8, std::process::id(), t)),
            s.hash_one((2u8, t, std::process::id())),
        ])
    }

    fn tag(&self, shim: i64, func: i64) -> u64 {
        let mut h = DefaultHasher::new();
        h.write_u64(self.0[0]);
        h.write_u64(self.0[1]);
        h.write_i64(shim);
        h.write_i64(func);
        h.write_u64(self.0[0] ^ self.0[1].rotate_left(17));
        h.finish()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl FnRef {
    /// The reference to `func` called through `shim`.
    ///
    /// # Errors
    ///
    /// [`Error::FunctionNotInProgram`] if either is not code of the
    /// program's executable.
    pub(crate) fn new(shim: Shim, func: usize, key: &Key) -> Result<FnRef> {
        for address in [shim as usize, func] {
            if !in_program(address) {
                return Err(Error::FunctionNotInProgram { address });
            }
        }
        let base = program().base as i64;
        let (shim, func) = ((shim as usize as i64) - base, func as i64 - base);
        Ok(FnRef {
            shim,
            func,
            tag: key.tag(shim, func),
        })
    }

    /// Runs the function on `input`, in a worker.
    pub(crate) fn call(
        &self,
        key: &Key,
        input: &[u8],
        cx: &mut WorkerCx,
    ) -> Result<Vec<u8>, TaskError> {
        let refuse = |reason: &str| TaskError::BadFunction {
            reason: reason.to_owned(),
        };
        let base = program().base as i64;
        let (shim, func) = (
            base.wrapping_add(self.shim) as usize,
            base.wrapping_add(self.func) as usize,
        );
        // The same bits as the reference checked last (a map's every
        // chunk) need no second check.
        if cx.checked != Some(*self) {
            if key.tag(self.shim, self.func) != self.tag {
                return Err(refuse("its tag does not match this pool's key"));
            }
            if !in_program(shim) || !in_program(func) {
                return Err(refuse("it points outside the program's code"));
            }
            cx.checked = Some(*self);
        }
        // SAFETY: the tag matched, so this pool's parent made the pair from
        // a `Shim` and a function of the type it was instantiated for, both
        // in this program's code (checked again above), at these distances
        // from the program's load address; this process runs the same executable file, so
        // both are at these addresses here.
        let shim: Shim = unsafe { std::mem::transmute::<usize, Shim>(shim) };
        // SAFETY: as above, `func` is the function `shim` expects.
        unsafe { shim(func, input, cx) }
    }
}

/// Where the program's executable is: its load address and its
/// executable ranges.
#[derive(Default)]
struct Program {
    base: usize,
    code: Vec<Range<usize>>,
}

/// Reads where the program is, once. The pool calls it before it forks a
/// worker, so that no forked worker calls the loader (whose lock another
/// thread may have held at the fork) or waits on this `OnceLock`.
pub(crate) fn prepare() {
    program();
}

fn program() -> &'static Program {
    static PROGRAM: OnceLock<Program> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        unsafe extern "C" fn first(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            out: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: the loader passes a valid `info` for the duration of
            // the call, and `out` is the `Vec` handed to `dl_iterate_phdr`
            // below; the first object it reports is the program itself.
            unsafe {
                let out = &mut *(out as *mut Program);
                let info = &*info;
                out.base = info.dlpi_addr as usize;
                if info.dlpi_phdr.is_null() || info.dlpi_phnum == 0 {
                    return 1;
                }
                let headers = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
                for h in headers {
                    if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 {
                        let start = (info.dlpi_addr as usize).wrapping_add(h.p_vaddr as usize);
                        out.code.push(start..start.wrapping_add(h.p_memsz as usize));
                    }
                }
            }
            1 // stop after the program
        }
        let mut found = Program::default();
        // SAFETY: `first` matches the callback type and only writes to
        // `found`, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(Some(first), &mut found as *mut _ as *mut libc::c_void);
        }
        found
    })
}

fn in_program(address: usize) -> bool {
    program().code.iter().any(|r| r.contains(&address))
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, TaskError> {
    postcard::from_bytes(bytes).map_err(|e| TaskError::Decode {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn encode<R: Serialize>(out: &R) -> Result<Vec<u8>, TaskError> {
    postcard::to_allocvec(out).map_err(|e| TaskError::Encode {
        reason: e.to_string(),
    })
}

/// The shim of `fn(A) -> R` over a chunk of arguments.
///
/// # Safety
///
/// `func` is a `fn(A) -> R`.
pub(crate) unsafe fn map<A: DeserializeOwned, R: Serialize>(
    func: usize,
    input: &[u8],
    _: &mut WorkerCx,
) -> Result<Vec<u8>, TaskError> {
    // SAFETY: the caller's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let items: Vec<A> = decode("arguments", input)?;
    encode(&items.into_iter().map(f).collect::<Vec<R>>())
}

/// The shim of `fn(A, B) -> R` over a chunk of argument pairs.
///
/// # Safety
///
/// `func` is a `fn(A, B) -> R`.
pub(crate) unsafe fn star2<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    func: usize,
    input: &[u8],
    _: &mut WorkerCx,
) -> Result<Vec<u8>, TaskError> {
    // SAFETY: the caller's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(func) };
    let items: Vec<(A, B)> = decode("arguments", input)?;
    encode(&items.into_iter().map(|(a, b)| f(a, b)).collect::<Vec<R>>())
}

/// The shim of `fn(A, B, C) -> R` over a chunk of argument triples.
///
/// # Safety
///
/// `func` is a `fn(A, B, C) -> R`.
pub(crate) unsafe fn star3<
    A: DeserializeOwned,
    B: DeserializeOwned,
    C: DeserializeOwned,
    R: Serialize,
>(
    func: usize,
    input: &[u8],
    _: &mut WorkerCx,
) -> Result<Vec<u8>, TaskError> {
    // SAFETY: the caller's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B, C) -> R>(func) };
    let items: Vec<(A, B, C)> = decode("arguments", input)?;
    encode(
        &items
            .into_iter()
            .map(|(a, b, c)| f(a, b, c))
            .collect::<Vec<R>>(),
    )
}

/// The input of a [`ranges`] task: the job (which names its context), the
/// encoded context, the range.
#[derive(Serialize, Deserialize)]
pub(crate) struct RangeInput<'a> {
    pub(crate) job: u64,
    #[serde(borrow)]
    pub(crate) context: &'a [u8],
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// The shim of `fn(&C, Range<usize>) -> R`: the context is decoded once
/// per job in each worker (its shared objects attached once), then every
/// range of that job reuses it.
///
/// # Safety
///
/// `func` is a `fn(&C, Range<usize>) -> R`.
pub(crate) unsafe fn ranges<C: DeserializeOwned + 'static, R: Serialize>(
    func: usize,
    input: &[u8],
    cx: &mut WorkerCx,
) -> Result<Vec<u8>, TaskError> {
    // SAFETY: the caller's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(&C, Range<usize>) -> R>(func) };
    let task: RangeInput<'_> = decode_borrowed(input)?;
    let cached = matches!(&cx.context, Some((job, c)) if *job == task.job && c.is::<C>());
    if !cached {
        cx.context = None; // detach the previous job's objects first
        let context: C = decode("arguments", task.context)?;
        cx.context = Some((task.job, Box::new(context)));
    }
    let Some((_, context)) = &cx.context else {
        unreachable!("set above")
    };
    let context = context.downcast_ref::<C>().expect("checked above");
    encode(&vec![f(context, task.start as usize..task.end as usize)])
}

fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, TaskError> {
    postcard::from_bytes(bytes).map_err(|e| TaskError::Decode {
        what: "arguments".to_owned(),
        reason: e.to_string(),
    })
}

/// The shim of an initializer `fn(A)`: its output is empty.
///
/// # Safety
///
/// `func` is a `fn(A)`.
pub(crate) unsafe fn init<A: DeserializeOwned>(
    func: usize,
    input: &[u8],
    _: &mut WorkerCx,
) -> Result<Vec<u8>, TaskError> {
    // SAFETY: the caller's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(A)>(func) };
    f(decode("arguments", input)?);
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn a_function_goes_and_comes_back() {
        let key = Key::random();
        let r = FnRef::new(map::<u32, u32>, double as fn(u32) -> u32 as usize, &key).unwrap();
        let out = r
            .call(&key, &postcard::to_allocvec(&vec![1u32, 2, 3]).unwrap(), &mut WorkerCx::default())
            .unwrap();
        assert_eq!(postcard::from_bytes::<Vec<u32>>(&out).unwrap(), [2, 4, 6]);
    }

    #[test]
    fn a_forged_reference_is_refused() {
        let key = Key::random();
        let mut r = FnRef::new(map::<u32, u32>, double as fn(u32) -> u32 as usize, &key).unwrap();
        r.func += 16;
        let e = r.call(&key, &[0], &mut WorkerCx::default()).unwrap_err();
        assert!(matches!(e, TaskError::BadFunction { .. }), "{e:?}");
        let other = Key::random();
        let r = FnRef::new(map::<u32, u32>, double as fn(u32) -> u32 as usize, &key).unwrap();
        assert!(r.call(&other, &[0], &mut WorkerCx::default()).is_err());
    }

    #[test]
    fn data_is_not_code() {
        static DATA: u64 = 7;
        let key = Key::random();
        let e = FnRef::new(map::<u32, u32>, &DATA as *const u64 as usize, &key).unwrap_err();
        assert!(matches!(e, Error::FunctionNotInProgram { .. }));
    }
}
