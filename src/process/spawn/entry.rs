//! [`Entry`]: what a spawned child runs, and [`EntryPoint`], an entry
//! registered with [`init`](crate::init).

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::process::exit::{
    ERROR_EXIT_CODE, Failure, FailureKind, IntoExitCode, Outcome, run_catching,
};

/// A function a spawned child can run: a value that travels to the child
/// (serde) and runs there.
///
/// The value carries the arguments: plain data, and shared objects
/// ([`Value`](crate::Value), [`Array`](crate::Array), locks, queues,
/// [`SharedMemory`](crate::SharedMemory), [`Descriptor`](crate::Descriptor)s,
/// ...), which encode as descriptors and attach again, validated, in the
/// child. The child finds the entry by [`name`](Entry::name), so the
/// program's [`init`](crate::init) call must register it ([`EntryPoint::of`]).
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Entry, EntryPoint, Process, Value};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Square {
///     input: u64,
///     output: Value<u64>,
/// }
///
/// impl Entry for Square {
///     type Output = ();
///     fn run(self) {
///         self.output.set(self.input * self.input);
///     }
/// }
///
/// fn main() -> multiproc::Result<()> {
///     multiproc::init(&[EntryPoint::of::<Square>()]); // first thing in main
///
///     let output = Value::new(0u64)?;
///     let mut p = Process::spawn(Square { input: 7, output: output.clone() });
///     p.start()?;
///     assert_eq!(p.join()?, 0);
///     assert_eq!(output.get(), 49);
///     Ok(())
/// }
/// ```
pub trait Entry: Serialize + DeserializeOwned {
    /// What [`run`](Entry::run) returns: `()`, an exit code, or a `Result`
    /// (see [`IntoExitCode`]).
    type Output: IntoExitCode;

    /// Runs in the child.
    fn run(self) -> Self::Output;

    /// The name parent and child know the entry by: by default the type's
    /// path (`std::any::type_name`), the same in both, as they run one
    /// binary. Override it if two entry types of one program could share a
    /// path (two versions of one crate).
    fn name() -> &'static str
    where
        Self: Sized,
    {
        std::any::type_name::<Self>()
    }
}

/// An [`Entry`] registered with [`init`](crate::init).
///
/// # Examples
///
/// ```
/// use multiproc::{Entry, EntryPoint};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Worker;
/// # impl Entry for Worker { type Output = (); fn run(self) {} }
///
/// const ENTRIES: &[EntryPoint] = &[EntryPoint::of::<Worker>()];
/// assert!(ENTRIES[0].name().ends_with("Worker"));
/// ```
#[derive(Clone, Copy)]
pub struct EntryPoint {
    name: fn() -> &'static str,
    /// Decodes the arguments, calls `started` (decoded or not), runs.
    pub(crate) run: fn(&[u8], &dyn Fn()) -> Outcome,
}

impl EntryPoint {
    /// The entry point of `E`.
    pub const fn of<E: Entry>() -> EntryPoint {
        EntryPoint {
            name: E::name,
            run: run_entry::<E>,
        }
    }

    /// The entry's [`name`](Entry::name).
    pub fn name(&self) -> &'static str {
        (self.name)()
    }
}

impl fmt::Debug for EntryPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EntryPoint").field(&self.name()).finish()
    }
}

/// Decodes an `E` from `args` and runs it, in the child. `started` is
/// called once the decoding is done, whether it worked or not: by then
/// every shared object in the arguments is attached (and, for a pipe end,
/// this process is recorded as its holder), so the parent may drop its
/// copies as soon as its `start` returns.
fn run_entry<E: Entry>(args: &[u8], started: &dyn Fn()) -> Outcome {
    run_catching(|| {
        crate::shm::object::clear_attach_error();
        let decoded = postcard::from_bytes::<E>(args);
        started();
        match decoded {
            Ok(entry) => entry.run().into_report().into(),
            Err(e) => {
                // postcard drops the messages of custom errors: the attach
                // error that made decoding fail was kept aside.
                let why = crate::shm::object::take_attach_error().unwrap_or_else(|| e.to_string());
                Outcome {
                    code: ERROR_EXIT_CODE,
                    failure: Some(Failure::new(
                        FailureKind::Setup,
                        format!("cannot decode the arguments of {}: {why}", E::name()),
                    )),
                }
            }
        }
    })
}
