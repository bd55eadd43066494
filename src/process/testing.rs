//! Re-executing a test binary to run one of its tests in a child: the one
//! mechanism the crate's own multi-process tests use, for spawned children
//! ([`ForTest`]) and for unrelated processes (a `Command` with
//! [`child_test_args`]). The child half is an `#[ignore]`d test, so a normal
//! `cargo test` counts only real tests; the child runs it with
//! `--include-ignored --exact`.

use std::ffi::OsString;

use crate::process::Process;

/// The command line that makes a test binary run only its test
/// `test_name` (its full path, as `cargo test` prints it), ignored or not,
/// on one thread, with its output shown and the harness quiet.
///
/// # Examples
///
/// ```
/// let args = multiproc::testing::child_test_args("spawn_child");
/// assert_eq!(args[0], "spawn_child");
/// assert!(args.iter().any(|a| a == "--include-ignored"));
/// ```
pub fn child_test_args(test_name: &str) -> Vec<OsString> {
    [
        test_name,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// A test hook on [`Process`], not part of the stable API: the spawned child
/// runs only the test `test_name` of this test binary (which must call
/// [`init`](crate::init)), with [`child_test_args`], and its stdout on
/// `/dev/null` until `init` runs (so the harness's lines stay out of the
/// parent's output; the entry prints to the real stdout).
pub trait ForTest {
    /// See the trait docs.
    fn for_test(self, test_name: &str) -> Self;
}

impl ForTest for Process<'_> {
    fn for_test(mut self, test_name: &str) -> Self {
        self.spawn.exec_args = child_test_args(test_name);
        self.spawn.hide_stdout_until_init = true;
        self
    }
}
