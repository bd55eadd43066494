//! What a child's target returns, and how a failure travels to the parent.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Exit code of a child whose target panicked (Rust's own code for a
/// panicking `main`).
pub const PANIC_EXIT_CODE: i32 = 101;

/// Exit code of a child whose target returned `Err`, or whose spawned entry
/// could not decode its arguments (as a `main` returning `Err`).
pub const ERROR_EXIT_CODE: i32 = 1;

/// A child's exit code and, for a failure, the message the parent can read
/// with [`Process::failure`](crate::Process::failure).
///
/// Made by [`IntoExitCode`] from what the target returns; a target may also
/// return one itself.
///
/// # Examples
///
/// ```
/// use multiproc::{ExitReport, Process};
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::fork(|| ExitReport::error(7, "bad input"));
/// p.start()?;
/// assert_eq!(p.join()?, 7);
/// assert_eq!(p.failure().unwrap().message(), "bad input");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitReport {
    code: i32,
    error: Option<String>,
}

impl ExitReport {
    /// Exit code 0, no message.
    pub fn success() -> ExitReport {
        ExitReport::code(0)
    }

    /// Exit code `code`, no message. The kernel keeps the low 8 bits, so the
    /// parent sees `code & 0xff`.
    pub fn code(code: i32) -> ExitReport {
        ExitReport { code, error: None }
    }

    /// Exit code `code` with an error message for the parent.
    pub fn error(code: i32, message: impl Into<String>) -> ExitReport {
        ExitReport {
            code,
            error: Some(message.into()),
        }
    }

    /// The exit code.
    pub fn exit_code(&self) -> i32 {
        self.code
    }

    /// The error message, if any.
    pub fn message(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// What a child's target may return: the counterpart of
/// [`std::process::Termination`] for `main`.
///
/// `()` exits with 0, an integer with itself, and `Result` with its `Ok`
/// value's code or, for `Err(e)`, with [`ERROR_EXIT_CODE`] and the message
/// `format!("{e:?}")` (what a `main` returning `Err` prints).
///
/// A closure that never returns (`|| std::process::exit(5)`,
/// `|| panic!("...")`) returns `!`, which implements it too: it never
/// produces a value.
///
/// # Examples
///
/// ```
/// use multiproc::{ExitReport, IntoExitCode};
///
/// assert_eq!(().into_report().exit_code(), 0);
/// assert_eq!(3.into_report().exit_code(), 3);
/// let failed: Result<(), &str> = Err("no input");
/// let report = failed.into_report();
/// assert_eq!(report.exit_code(), 1);
/// assert_eq!(report.message(), Some("\"no input\""));
/// ```
pub trait IntoExitCode {
    /// The exit code and message this value stands for.
    fn into_report(self) -> ExitReport;
}

impl IntoExitCode for () {
    fn into_report(self) -> ExitReport {
        ExitReport::success()
    }
}

impl IntoExitCode for i32 {
    fn into_report(self) -> ExitReport {
        ExitReport::code(self)
    }
}

impl IntoExitCode for u8 {
    fn into_report(self) -> ExitReport {
        ExitReport::code(i32::from(self))
    }
}

impl IntoExitCode for ExitReport {
    fn into_report(self) -> ExitReport {
        self
    }
}

/// Names the never type `!` on stable Rust, where it can be written only as
/// a return type: the output of a `fn() -> !`.
#[doc(hidden)]
pub trait ReturnType {
    /// What the function returns.
    type Output;
}

impl<O> ReturnType for fn() -> O {
    type Output = O;
}

/// `!`, the type of an expression that never produces a value (a closure
/// that exits or panics returns it).
type Never = <fn() -> ! as ReturnType>::Output;

impl IntoExitCode for Never {
    fn into_report(self) -> ExitReport {
        self
    }
}

impl<T: IntoExitCode, E: fmt::Debug> IntoExitCode for Result<T, E> {
    fn into_report(self) -> ExitReport {
        match self {
            Ok(v) => v.into_report(),
            Err(e) => ExitReport::error(ERROR_EXIT_CODE, format!("{e:?}")),
        }
    }
}

/// How a child failed, as it reported it (see [`Failure`] for an example).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The target panicked (exit code [`PANIC_EXIT_CODE`]).
    Panic,
    /// The target returned an error (see [`IntoExitCode`]).
    Error,
    /// A spawned child could not set its entry point up: its arguments
    /// could not be decoded, say a shared object whose descriptor does not
    /// attach (exit code [`ERROR_EXIT_CODE`]).
    Setup,
}

/// A failure a child reported before it exited: a panic message, the
/// `Debug` form of an error its target returned, or why a spawned child's
/// arguments did not decode.
///
/// # Examples
///
/// ```
/// use multiproc::{FailureKind, Process};
/// # fn main() -> multiproc::Result<()> {
/// let cheese = 0;
/// let mut p = Process::fork(move || assert!(cheese > 0, "out of cheese"));
/// p.start()?;
/// assert_eq!(p.join()?, 101);
/// let failure = p.failure().unwrap();
/// assert_eq!(failure.kind(), FailureKind::Panic);
/// assert_eq!(failure.message(), "out of cheese");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    kind: FailureKind,
    message: String,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: String) -> Failure {
        Failure { kind, message }
    }

    /// What kind of failure.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The message (cut to 16 KiB).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FailureKind::Panic => write!(f, "panicked: {}", self.message),
            FailureKind::Error => write!(f, "returned an error: {}", self.message),
            FailureKind::Setup => write!(f, "could not start its entry point: {}", self.message),
        }
    }
}

impl std::error::Error for Failure {}

/// How a target ended in the child: the code to exit with, and what to
/// report.
pub(crate) struct Outcome {
    pub(crate) code: i32,
    pub(crate) failure: Option<Failure>,
}

impl From<ExitReport> for Outcome {
    fn from(r: ExitReport) -> Outcome {
        Outcome {
            code: r.code,
            failure: r.error.map(|m| Failure::new(FailureKind::Error, m)),
        }
    }
}

/// Runs `f`, turning a panic into exit code [`PANIC_EXIT_CODE`] and its
/// message. The unwind stops here: it never leaves the child's entry frame.
pub(crate) fn run_catching(f: impl FnOnce() -> Outcome) -> Outcome {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(outcome) => outcome,
        Err(payload) => {
            let message = panic_message(&*payload);
            // The payload's destructor is user code that could panic again;
            // the child exits right after this, so it is simply not run.
            std::mem::forget(payload);
            Outcome {
                code: PANIC_EXIT_CODE,
                failure: Some(Failure::new(FailureKind::Panic, message)),
            }
        }
    }
}

/// The message of a panic payload (`panic!` makes a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any> (a panic payload that is not a string)".to_owned()
    }
}
