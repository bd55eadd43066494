//! The spawn start method: re-execute this program and run a registered
//! entry point in it.
//!
//! # How a spawn goes
//!
//! 1. The parent encodes the [`Entry`] value with postcard. Shared objects
//!    inside it encode as their [`Descriptor`](crate::Descriptor)s, and each
//!    memfd of this process that a descriptor names is collected on the way
//!    (`shm::segment::collect_memfds`).
//! 2. It writes a boot record (entry name, arguments, the child's name and
//!    place in the process tree, daemon flag, the parent's pid and name) to
//!    a fresh memfd, opens the status pipe, and calls `posix_spawn` on
//!    `/proc/self/exe` (the very file this process runs, even if the path
//!    was replaced since), with the environment plus [`SPAWN_ENV`]. File
//!    actions `dup2(fd, fd)` clear close-on-exec, in the child only, on the
//!    boot memfd, the status pipe's write end and every noted memfd: the
//!    child inherits exactly those, at the same numbers, and no other
//!    process can catch them (every descriptor of this crate is
//!    close-on-exec in the parent). glibc's `posix_spawn` is a `vfork`-style
//!    clone: nothing of the parent is copied, and the parent may have any
//!    number of threads.
//! 3. In the child, [`init`] (first thing in `main`) reads [`SPAWN_ENV`],
//!    checks that the descriptor it names is the boot memfd (number,
//!    device and inode), marks the inherited descriptors close-on-exec
//!    again, becomes a daemon if asked (`PR_SET_PDEATHSIG`, then a check
//!    that the parent is still the one that spawned it), finds the entry
//!    point by name, reports `STARTED` on the status pipe, decodes the
//!    arguments (each shared object attaches from its descriptor, through
//!    the inherited descriptor, and is validated), runs the entry, reports a
//!    failure if any, and exits. The parent's `start` returns once `STARTED`
//!    arrives.
//!
//! # No fork bomb, no hang
//!
//! A program that never calls `init` runs `main` again in the child. The
//! parent notices: the child exits, or stays silent past the start timeout
//! (then it is killed), without the handshake, and `start` returns
//! [`Error::Spawn`] saying that `init` is missing. Meanwhile the child
//! cannot multiply: in a process whose [`SPAWN_ENV`] names a live boot memfd
//! that `init` has not dispatched, every `Process::start` is refused.
//! [`SPAWN_ENV`] reaching an unrelated program (inherited by something the
//! entry starts with `std::process::Command`) is ignored there: the boot
//! memfd is not open in it.

use std::ffi::{CString, OsString};
use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use rustix::fs::MemfdFlags;
use rustix::pipe::PipeFlags;
use rustix::process::Pid;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::process::child::Child;
use crate::process::current::{self, Identity};
use crate::process::exit::{
    ERROR_EXIT_CODE, Failure, FailureKind, IntoExitCode, Outcome, run_catching,
};
use crate::process::status;
use crate::shm::segment::collect_memfds;

/// The environment variable that tells a re-executed program which boot
/// record to run (`version:parent pid:boot fd:device:inode:status fd`).
/// Set by the parent for the child only; a program has no reason to set
/// it, and reads it only to tell, before [`init`], whether it runs as a
/// spawned child.
///
/// # Examples
///
/// ```
/// // Code that must run once, in the parent only, even before `init`:
/// if std::env::var_os(multiproc::SPAWN_ENV).is_none() {
///     println!("starting up");
/// }
/// ```
pub const SPAWN_ENV: &str = "MULTIPROC_SPAWN";

/// Version of the boot record and of [`SPAWN_ENV`]'s format.
const WIRE_VERSION: u32 = 1;

/// How long `start` waits, by default, for a spawned child to reach
/// [`init`].
pub(crate) const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A function a spawned child can run: a value that travels to the child
/// (serde) and runs there.
///
/// The value carries the arguments: plain data, and shared objects
/// ([`Value`](crate::Value), [`Array`](crate::Array), locks, queues,
/// [`SharedMemory`](crate::SharedMemory), [`Descriptor`](crate::Descriptor)s,
/// ...), which encode as descriptors and attach again, validated, in the
/// child. The child finds the entry by [`name`](Entry::name), so the
/// program's [`init`] call must register it ([`EntryPoint::of`]).
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

/// An [`Entry`] registered with [`init`].
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
    run: fn(&[u8]) -> Outcome,
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

/// Decodes an `E` from `args` and runs it, in the child.
fn run_entry<E: Entry>(args: &[u8]) -> Outcome {
    run_catching(|| {
        crate::shm::object::clear_attach_error();
        match postcard::from_bytes::<E>(args) {
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

/// What the child needs to know, in the boot memfd.
#[derive(Serialize, Deserialize)]
struct Boot {
    version: u32,
    entry: String,
    name: String,
    path: Vec<u32>,
    daemon: bool,
    parent_pid: u32,
    parent_name: String,
    /// The parent's stdout, kept aside while fd 1 is `/dev/null` until
    /// `init` (see `Process::for_test`).
    stdout: Option<i32>,
    /// Memfds inherited for the arguments' shared objects.
    inherited: Vec<i32>,
    /// The encoded entry value.
    args: Vec<u8>,
}

/// 1 once `init` dispatched this process (or in its forked copies).
static DISPATCHED: AtomicU32 = AtomicU32::new(0);

/// [`SPAWN_ENV`], parsed and checked against this process's descriptors.
struct EnvRef {
    parent: u32,
    boot: RawFd,
    status: RawFd,
}

/// The boot record reference in [`SPAWN_ENV`], if it is meant for this
/// process: its boot memfd is open here, at that number, and is that file.
fn env_ref() -> Option<EnvRef> {
    let value = std::env::var_os(SPAWN_ENV)?;
    let value = value.to_str()?;
    let mut it = value.split(':');
    let mut next = || it.next();
    let version: u32 = next()?.parse().ok()?;
    let parent: u32 = next()?.parse().ok()?;
    let boot: RawFd = next()?.parse().ok()?;
    let dev: u64 = next()?.parse().ok()?;
    let ino: u64 = next()?.parse().ok()?;
    let status: RawFd = next()?.parse().ok()?;
    if version != WIRE_VERSION || file_id(boot) != Some((dev, ino)) {
        return None;
    }
    Some(EnvRef {
        parent,
        boot,
        status,
    })
}

/// (device, inode) of descriptor number `fd`, if open.
fn file_id(fd: RawFd) -> Option<(u64, u64)> {
    if fd < 0 {
        return None;
    }
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat only reads the descriptor number (a closed one fails
    // with EBADF) and writes the stat buffer we own.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// Sets close-on-exec on descriptor number `fd` (an inherited one).
fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl F_SETFD only changes a flag of the descriptor number; a
    // closed one fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Refuses to start a process in a spawned child that [`init`] has not
/// dispatched (see the module docs: no fork bomb).
pub(crate) fn check_may_start(name: &str) -> Result<()> {
    if DISPATCHED.load(Ordering::Relaxed) == 0
        && std::env::var_os(SPAWN_ENV).is_some()
        && env_ref().is_some()
    {
        return Err(Error::ProcessState {
            name: name.to_owned(),
            reason: "this process was spawned to run an entry point, but multiproc::init has \
                     not run it: the program does not call multiproc::init first thing in main; \
                     refusing to start processes here, which could start copies of this program \
                     without end"
                .to_owned(),
        });
    }
    Ok(())
}

/// Runs the entry point this process was spawned for, if it was, and exits;
/// returns at once otherwise. Call it first thing in `main`, with every
/// [`Entry`] the program spawns.
///
/// In a spawned child, `init` never returns: it runs the entry named by the
/// parent and exits with its code (after waiting for the children the entry
/// left running, as Python does at exit). In any other process it only
/// reads one environment variable ([`SPAWN_ENV`]) and returns.
///
/// What runs before `init` in `main` runs again in every spawned child,
/// so put nothing before it that should run once (opening files,
/// printing, parsing arguments that a child does not get).
///
/// If a spawned child's `init` does not register the entry it was spawned
/// for, the parent's [`start`](crate::Process::start) fails with
/// [`Error::Spawn`] naming the entries it does register. If `main` never
/// calls `init`, `start` fails too (the child exits or times out without the
/// handshake), and the child cannot start processes meanwhile: no fork
/// bomb, no hang.
///
/// # Test binaries
///
/// A test binary's `main` belongs to the test harness, so the child is made
/// to run one test, and that test calls `init`: register the entries in a
/// test of their own, and name it with
/// [`Process::for_test`](crate::Process::for_test):
///
/// ```no_run
/// use multiproc::{Entry, EntryPoint, Process};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Job;
/// # impl Entry for Job { type Output = (); fn run(self) {} }
///
/// const ENTRIES: &[EntryPoint] = &[EntryPoint::of::<Job>()];
///
/// /// Runs the entry in a spawned child; does nothing in a normal test run.
/// #[test]
/// fn spawn_child() {
///     multiproc::init(ENTRIES);
/// }
///
/// #[test]
/// fn job_runs() {
///     let mut p = Process::spawn(Job).for_test("spawn_child");
///     p.start().unwrap();
///     assert_eq!(p.join().unwrap(), 0);
/// }
/// ```
///
/// The child runs the test binary with `spawn_child --exact --nocapture
/// --test-threads=1 --quiet`, with stdout on `/dev/null` until `init`
/// (so the harness's own lines do not clutter the parent's output; the
/// entry's output goes to the real stdout). A test binary with
/// `harness = false` can call `init` at the top of its own `main` instead.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Entry, EntryPoint};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Worker;
/// # impl Entry for Worker { type Output = (); fn run(self) {} }
///
/// fn main() {
///     multiproc::init(&[EntryPoint::of::<Worker>()]);
///     // ... the program, which may spawn `Worker`s
/// }
/// ```
pub fn init(entries: &[EntryPoint]) {
    if DISPATCHED.load(Ordering::Relaxed) != 0 {
        return;
    }
    let Some(env) = env_ref() else {
        return;
    };
    DISPATCHED.store(1, Ordering::Relaxed);
    let code = dispatch(entries, &env);
    // Flushes stdout and runs the `atexit` handler that waits for the
    // children the entry left running.
    std::process::exit(code)
}

/// Runs the spawned entry; the exit code.
fn dispatch(entries: &[EntryPoint], env: &EnvRef) -> i32 {
    // Nothing this process starts should inherit the status pipe.
    set_cloexec(env.status);
    let setup_failed = |why: String| {
        status::send(env.status, status::SETUP, &why);
        ERROR_EXIT_CODE
    };
    let boot = read_boot(env.boot);
    // SAFETY: closes the boot memfd, inherited for this one read.
    unsafe { libc::close(env.boot) };
    let boot = match boot {
        Ok(b) => b,
        Err(why) => return setup_failed(why),
    };
    for &fd in &boot.inherited {
        set_cloexec(fd);
    }
    if let Some(fd) = boot.stdout {
        // SAFETY: puts the parent's stdout, inherited at `fd` for this
        // purpose, back on descriptor 1 (an atomic replacement of the
        // `/dev/null` there), then closes the spare.
        unsafe {
            libc::dup2(fd, 1);
            libc::close(fd);
        }
    }
    if boot.daemon {
        // A daemon dies with its parent; if the parent is already gone (we
        // were handed to another), so is the daemon.
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
        if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(env.parent) {
            return ERROR_EXIT_CODE;
        }
    }
    current::enter_child(Box::new(Identity {
        name: boot.name,
        path: boot.path,
        daemon: boot.daemon,
        parent: (boot.parent_pid, boot.parent_name),
    }));
    let found: Vec<&EntryPoint> = entries.iter().filter(|e| e.name() == boot.entry).collect();
    let entry = match found[..] {
        [one] => one,
        [] => {
            let names: Vec<&str> = entries.iter().map(EntryPoint::name).collect();
            return setup_failed(format!(
                "entry point {} is not registered with this program's multiproc::init \
                 (it registers {names:?})",
                boot.entry
            ));
        }
        _ => {
            return setup_failed(format!(
                "{} entry points are registered under the name {}: give them distinct \
                 Entry::name()s",
                found.len(),
                boot.entry
            ));
        }
    };
    status::send(env.status, status::STARTED, &boot.entry);
    let outcome = (entry.run)(&boot.args);
    if let Some(f) = &outcome.failure {
        status::send(env.status, status::tag_of(f.kind()), f.message());
    }
    outcome.code
}

/// Reads and decodes the boot record from memfd `fd`.
fn read_boot(fd: RawFd) -> std::result::Result<Boot, String> {
    let unreadable = |e: std::io::Error| format!("cannot read the boot record: {e}");
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat of the inherited memfd into a buffer we own.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return Err(unreadable(std::io::Error::last_os_error()));
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let size = unsafe { st.assume_init() }.st_size;
    let size = usize::try_from(size).map_err(|_| format!("boot record of {size} bytes"))?;
    let mut bytes = vec![0u8; size];
    let mut done = 0;
    while done < size {
        // SAFETY: pread from the inherited memfd into the rest of a buffer
        // we own.
        let n = unsafe {
            libc::pread(
                fd,
                bytes[done..].as_mut_ptr().cast(),
                size - done,
                done as libc::off_t,
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            0 => return Err(format!("boot record cut at {done} of {size} bytes")),
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return Err(unreadable(std::io::Error::last_os_error())),
        }
    }
    let boot: Boot =
        postcard::from_bytes(&bytes).map_err(|e| format!("cannot decode the boot record: {e}"))?;
    if boot.version != WIRE_VERSION {
        return Err(format!(
            "boot record version {} (this program reads {WIRE_VERSION})",
            boot.version
        ));
    }
    Ok(boot)
}

/// How to spawn: from `Process`'s builder methods.
#[derive(Clone, Debug)]
pub(crate) struct SpawnConfig {
    /// Arguments after `argv[0]` (none by default).
    pub(crate) exec_args: Vec<OsString>,
    /// Stdout on `/dev/null` until `init` (test harness chatter).
    pub(crate) hide_stdout_until_init: bool,
    pub(crate) start_timeout: Duration,
}

impl Default for SpawnConfig {
    fn default() -> Self {
        SpawnConfig {
            exec_args: Vec::new(),
            hide_stdout_until_init: false,
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }
}

/// Encodes a spawn's entry. Also hands back the entry itself, to be kept
/// until the child has inherited the descriptors: shared objects that only
/// the entry holds would otherwise close their memfds first.
pub(crate) type Encode<'a> =
    Box<dyn FnOnce() -> (std::result::Result<Vec<u8>, String>, Box<dyn Send + 'a>) + Send + 'a>;

/// What the new child is called and where it sits.
pub(crate) struct ChildSetup<'s> {
    pub(crate) name: &'s str,
    pub(crate) path: &'s [u32],
    pub(crate) daemon: bool,
}

/// Spawns a child that runs entry `entry`, and waits for its handshake.
pub(crate) fn start(
    entry: &str,
    encode: Encode<'_>,
    setup: &ChildSetup<'_>,
    cfg: &SpawnConfig,
) -> Result<Child> {
    let fail = |reason: String| Error::Spawn {
        entry: entry.to_owned(),
        reason,
    };
    // 1. The arguments, and the memfds they name.
    let ((encoded, _keep_until_spawned), noted) = collect_memfds(encode);
    let args = encoded.map_err(|e| fail(format!("cannot encode the arguments: {e}")))?;
    let mut inherited: Vec<RawFd> = Vec::new();
    for (fd, dev, ino) in noted {
        // Only a descriptor that is still that file (a bare `Descriptor`
        // does not keep its segment open).
        if !inherited.contains(&fd) && file_id(fd) == Some((dev, ino)) {
            inherited.push(fd);
        }
    }

    // 2. The boot record and the status pipe.
    let stdout_copy = if cfg.hide_stdout_until_init {
        Some(
            rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)
                .map_err(|e| Error::io("fcntl(F_DUPFD_CLOEXEC)", e))?,
        )
    } else {
        None
    };
    let boot = Boot {
        version: WIRE_VERSION,
        entry: entry.to_owned(),
        name: setup.name.to_owned(),
        path: setup.path.to_vec(),
        daemon: setup.daemon,
        parent_pid: std::process::id(),
        parent_name: current::name(),
        stdout: stdout_copy.as_ref().map(AsRawFd::as_raw_fd),
        inherited: inherited.clone(),
        args,
    };
    let bytes = postcard::to_allocvec(&boot)
        .map_err(|e| fail(format!("cannot encode the boot record: {e}")))?;
    let boot_fd = rustix::fs::memfd_create("multiproc-spawn", MemfdFlags::CLOEXEC)
        .map_err(|e| Error::io("memfd_create", e))?;
    write_all(&boot_fd, &bytes)?;
    let st = rustix::fs::fstat(&boot_fd).map_err(|e| Error::io("fstat", e))?;
    let (status_r, status_w) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::io("pipe2", e))?;

    // 3. Environment and command line.
    let env_value = format!(
        "{WIRE_VERSION}:{}:{}:{}:{}:{}",
        std::process::id(),
        boot_fd.as_raw_fd(),
        st.st_dev,
        st.st_ino,
        status_w.as_raw_fd()
    );
    let envp = child_env(&env_value).map_err(fail)?;
    let mut argv = Vec::with_capacity(cfg.exec_args.len() + 1);
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("/proc/self/exe"));
    for a in std::iter::once(argv0).chain(cfg.exec_args.iter().cloned()) {
        argv.push(
            CString::new(a.into_vec())
                .map_err(|_| fail("an argument holds a NUL byte".to_owned()))?,
        );
    }

    // 4. Exactly these descriptors reach the child.
    let mut keep = inherited;
    keep.push(boot_fd.as_raw_fd());
    keep.push(status_w.as_raw_fd());
    if let Some(fd) = &stdout_copy {
        keep.push(fd.as_raw_fd());
    }
    let pid = posix_spawn(&argv, &envp, &keep, cfg.hide_stdout_until_init)
        .map_err(|e| fail(format!("posix_spawn of /proc/self/exe failed: {e}")))?;
    drop((status_w, boot_fd, stdout_copy));

    // 5. The handshake.
    let child = Child::new(pid, status_r, setup.name.to_owned(), setup.daemon);
    child.handshake(cfg.start_timeout).map_err(fail)?;
    Ok(child)
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("write", e)),
        }
    }
    Ok(())
}

/// This process's environment, minus any [`SPAWN_ENV`], plus ours.
fn child_env(value: &str) -> std::result::Result<Vec<CString>, String> {
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k == SPAWN_ENV {
            continue;
        }
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend_from_slice(&v.into_vec());
        // The environment cannot hold NUL bytes; skip one that does.
        if let Ok(c) = CString::new(kv) {
            env.push(c);
        }
    }
    env.push(
        CString::new(format!("{SPAWN_ENV}={value}"))
            .map_err(|_| "the spawn variable holds a NUL byte".to_owned())?,
    );
    Ok(env)
}

/// `posix_spawn` of `/proc/self/exe`: `keep` descriptors are inherited at
/// their numbers (`dup2(fd, fd)` clears close-on-exec in the child), the
/// signal mask is emptied and SIGPIPE reset to default (as
/// `std::process::Command` does), and with `null_stdout` descriptor 1 is
/// `/dev/null`.
fn posix_spawn(
    argv: &[CString],
    envp: &[CString],
    keep: &[RawFd],
    null_stdout: bool,
) -> std::io::Result<Pid> {
    fn check(r: libc::c_int) -> std::io::Result<()> {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(r))
        }
    }
    /// Destroys the file actions and attributes however we leave.
    struct Guard {
        fa: *mut libc::posix_spawn_file_actions_t,
        attr: *mut libc::posix_spawnattr_t,
    }
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: both were initialised before the guard was made, and
            // are destroyed once, here.
            unsafe {
                libc::posix_spawn_file_actions_destroy(self.fa);
                libc::posix_spawnattr_destroy(self.attr);
            }
        }
    }

    let mut argv_p: Vec<*mut libc::c_char> = argv.iter().map(|s| s.as_ptr().cast_mut()).collect();
    argv_p.push(std::ptr::null_mut());
    let mut envp_p: Vec<*mut libc::c_char> = envp.iter().map(|s| s.as_ptr().cast_mut()).collect();
    envp_p.push(std::ptr::null_mut());

    let mut fa = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    let mut attr = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
    // SAFETY: the file actions and attributes are initialised before use
    // and destroyed by the guard; they stay in place (never moved) while
    // initialised. argv and envp are NUL-terminated arrays of pointers to
    // NUL-terminated strings that outlive the call. The child is a
    // vfork-style clone that only applies the actions and execs.
    unsafe {
        check(libc::posix_spawn_file_actions_init(fa.as_mut_ptr()))?;
        if let Err(e) = check(libc::posix_spawnattr_init(attr.as_mut_ptr())) {
            libc::posix_spawn_file_actions_destroy(fa.as_mut_ptr());
            return Err(e);
        }
        let g = Guard {
            fa: fa.as_mut_ptr(),
            attr: attr.as_mut_ptr(),
        };
        for &fd in keep {
            check(libc::posix_spawn_file_actions_adddup2(g.fa, fd, fd))?;
        }
        if null_stdout {
            check(libc::posix_spawn_file_actions_addopen(
                g.fa,
                1,
                c"/dev/null".as_ptr(),
                libc::O_WRONLY,
                0,
            ))?;
        }
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        check(libc::posix_spawnattr_setsigmask(g.attr, set.as_ptr()))?;
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        check(libc::posix_spawnattr_setsigdefault(g.attr, set.as_ptr()))?;
        check(libc::posix_spawnattr_setflags(
            g.attr,
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        ))?;
        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(
            &mut pid,
            c"/proc/self/exe".as_ptr(),
            g.fa,
            g.attr,
            argv_p.as_ptr(),
            envp_p.as_ptr(),
        ))?;
        Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("posix_spawn returned pid 0"))
    }
}
