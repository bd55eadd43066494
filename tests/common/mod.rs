//! Multi-process test helpers: a forked child with a deadline, and a re-exec
//! of the test binary as an unrelated process.
//!
//! Tests run on the harness's threads, so a forked child must do only what it
//! needs: the closure runs, its return value becomes the exit code, and the
//! child leaves with `_exit` (no destructors, no atexit handlers, nothing
//! flushed twice). A panic in the child becomes exit code 101. Every child
//! dies with the test process (`PR_SET_PDEATHSIG`) and is killed and reaped if
//! its handle is dropped unjoined, so a failing test leaves no orphan.
//!
//! [`entries`] holds what the `Process` tests (`tests/process_*.rs`) share.
#![allow(dead_code)]

pub mod entries;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long any child may run before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Runs of a red-team test: `MULTIPROC_REDTEAM` if set (the counts,
/// e.g. 300), else `default` (a smoke run in `cargo test`).
pub fn redteam_runs(default: u32) -> u32 {
    std::env::var("MULTIPROC_REDTEAM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A forked child process.
pub struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

/// Forks; the child runs `f` and exits with its return value.
pub fn fork<F: FnOnce() -> i32>(f: F) -> Child {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the child runs only `f` (test code written for it) and leaves
    // with `_exit`; the parent only records the pid.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: prctl and getppid are async-signal-safe; the check after the
        // prctl closes the race with a parent that died before it.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(102);
            }
        }
        let code = catch_unwind(AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(code) }
    }
    Child { pid, reaped: false }
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits up to `timeout`; `Some(code)` once it exited (negative signal
    /// number if killed), `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        let mut nap = Duration::from_micros(100);
        loop {
            let mut status = 0;
            // SAFETY: reaps only our own child, without blocking.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            assert!(
                r >= 0,
                "waitpid failed: {}",
                std::io::Error::last_os_error()
            );
            if r == self.pid {
                self.reaped = true;
                return Some(if libc::WIFSIGNALED(status) {
                    -libc::WTERMSIG(status)
                } else {
                    libc::WEXITSTATUS(status)
                });
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(10));
        }
    }

    /// Waits for the child (failing the test after [`DEADLINE`]) and returns
    /// its exit code.
    pub fn join(mut self) -> i32 {
        match self.wait_timeout(DEADLINE) {
            Some(code) => code,
            None => panic!("child {} still running after {DEADLINE:?}", self.pid),
        }
    }

    /// Waits (up to [`DEADLINE`]) until the child sleeps in a futex wait,
    /// as read from `/proc/<pid>/wchan`: proof that a wake-up test really
    /// tests a wake-up.
    pub fn wait_until_futex_sleep(&self) {
        let end = Instant::now() + DEADLINE;
        let path = format!("/proc/{}/wchan", self.pid);
        loop {
            let wchan = std::fs::read_to_string(&path).unwrap_or_default();
            if wchan.starts_with("futex") {
                return;
            }
            assert!(
                Instant::now() < end,
                "child {} never slept on a futex (wchan {wchan:?})",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: signals only our own unreaped child.
        unsafe { libc::kill(self.pid, sig) };
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let mut status = 0;
            // SAFETY: reaps our own child, which was just killed.
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
        }
    }
}

/// Forks `n` children running `f(i)` and asserts that each exits with 0.
pub fn fork_all<F: Fn(usize) -> i32>(n: usize, f: F) {
    let kids: Vec<Child> = (0..n).map(|i| fork(|| f(i))).collect();
    for (i, k) in kids.into_iter().enumerate() {
        assert_eq!(k.join(), 0, "child {i} failed");
    }
}

/// Environment variable that tells a re-executed test binary which role to
/// play; the role's test does nothing when it is absent.
pub const ROLE_VAR: &str = "MULTIPROC_TEST_ROLE";
/// Environment variable carrying hex data to the re-executed test.
pub const DATA_VAR: &str = "MULTIPROC_TEST_DATA";

/// Runs test `test_name` of this same test binary (an `#[ignore]`d child
/// half) as a separate, unrelated process (no fork: a fresh exec, no
/// inherited descriptors) with `data` in its environment, with the command
/// line spawned children get too (`multiproc::testing::child_test_args`);
/// returns its exit code and output. Fails the test after [`DEADLINE`].
pub fn run_self(test_name: &str, data: &[u8]) -> (i32, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(multiproc::testing::child_test_args(test_name))
        .env(ROLE_VAR, test_name)
        .env(DATA_VAR, to_hex(data))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn test binary");
    // Drain both pipes while waiting, so a chatty child never blocks on a
    // full pipe.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let text = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
            return (status.code().unwrap_or(-1), text);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("re-executed {test_name} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// In a test used as a [`run_self`] role: the data handed over, or `None`
/// when this test runs normally (then it should return at once).
pub fn role_data(test_name: &str) -> Option<Vec<u8>> {
    (std::env::var(ROLE_VAR).ok()? == test_name)
        .then(|| from_hex(&std::env::var(DATA_VAR).unwrap_or_default()))
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// A unique name for a named segment, removed (if still there) on drop.
/// Drop does not run in a forked child (it leaves with `_exit`): create and
/// own names in the parent.
pub struct ShmName(pub String);

impl ShmName {
    pub fn new(tag: &str) -> ShmName {
        #[allow(clippy::disallowed_types)] // a plain in-process counter, not a model
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ShmName(format!("multiproc-test-{}-{tag}-{n}", std::process::id()))
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = multiproc::SharedMemory::remove(&self.0);
    }
}

/// A peer's view of a named segment: its own mapping of the file, through
/// which the test scribbles as another process would (this process's
/// `SharedMemory::write_at` refuses to write over live objects).
pub struct Peer(memmap2::MmapRaw);

impl Peer {
    pub fn open(shm: &multiproc::SharedMemory) -> Peer {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm/{}", shm.name()))
            .unwrap();
        Peer(memmap2::MmapRaw::map_raw(&f).unwrap())
    }

    pub fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.0.len());
        // SAFETY: in bounds of the peer's mapping; the test holds no
        // reference into these bytes while it scribbles.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.0.as_mut_ptr().add(off), bytes.len())
        };
    }

    pub fn write_u64(&self, off: usize, v: u64) {
        assert!(off + 8 <= self.0.len() && off.is_multiple_of(8));
        // SAFETY: in bounds of the peer's mapping and 8-aligned (asserted);
        // the test holds no reference into these bytes.
        unsafe { std::ptr::write_volatile(self.0.as_mut_ptr().add(off).cast::<u64>(), v) };
    }

    pub fn read_u64(&self, off: usize) -> u64 {
        assert!(off + 8 <= self.0.len() && off.is_multiple_of(8));
        // SAFETY: in bounds of the peer's mapping and 8-aligned (asserted).
        unsafe { std::ptr::read_volatile(self.0.as_ptr().add(off).cast::<u64>()) }
    }

    pub fn header(&self, off: usize) -> [u8; 64] {
        let mut h = [0u8; 64];
        // SAFETY: in bounds of the peer's mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.0.as_ptr().add(off), h.as_mut_ptr(), 64) };
        h
    }
}

/// Asserts that process `pid` is gone: exited and reaped (no zombie).
#[allow(dead_code)]
pub fn assert_gone(pid: u32) {
    // SAFETY: signal 0 only checks that the pid exists.
    let r = unsafe { libc::kill(pid as i32, 0) };
    assert_eq!(r, -1, "pid {pid} still exists (running or a zombie)");
}
