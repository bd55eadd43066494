//! Who this thread is, as a robust lock records it, and whether a recorded
//! owner still lives: the `/proc`-backed [`Liveness`].
//!
//! Declaring a live owner dead would let two holders in, so every way the
//! `/proc` view could be wrong disables "dead" rather than risk it:
//!
//! * `/proc` must belong to this process's PID namespace (checked once per
//!   process: `/proc/thread-self` must name this pid and TID), else no owner
//!   is ever reported dead (locks then wait for live owners only, as a plain
//!   mutex would);
//! * a missing `/proc/<tid>` counts as dead only if `kill(tid, 0)` also says
//!   no such task (`hidepid` or a foreign `/proc` can hide live tasks);
//! * start times are read from the same kind of path by owner and checker
//!   (`/proc/<tid>/stat`), parsed as bytes (a thread name need not be UTF-8),
//!   and shifted back by the reader's boot-time namespace offset, so two
//!   processes in different time namespaces compute the same stamp.

use std::cell::Cell;

use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::algo::robust::{Liveness, Owner};

thread_local! {
    static ME: Cell<Option<Owner>> = const { Cell::new(None) };
}

/// This process's identity (its pid and start stamp) as `Owner` bits, 0
/// until looked up.
static PROCESS: AtomicU64 = AtomicU64::new(0);

/// Forgets this thread's and this process's cached identity. Called in a
/// forked child (whose only thread has a new TID, and which is a new
/// process) by the atfork child handler in `sys/atfork.rs`.
pub(crate) fn forget_identity() {
    let _ = ME.try_with(|c| c.set(None));
    PROCESS.store(0, Ordering::Relaxed);
}

/// This process as a holder table records it: its pid and the start stamp
/// of its main thread (which started with the process), cached per
/// process. [`ProcLiveness`] tells it dead as it tells a thread.
///
/// Makes no allocation (it runs in the atfork child handler): the start
/// stamp is read into a stack buffer, and left 0 ("unknown": liveness then
/// goes by existence) where the checks that allocate have not run in this
/// process or its parent yet.
pub(crate) fn process() -> Owner {
    if let Some(me) = Owner::of(PROCESS.load(Ordering::Relaxed)) {
        return me;
    }
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let mut buf = [0u8; STAT_BYTES];
    let stamp = match (PROC_OURS.load(Ordering::Relaxed), read_stat_into(pid, &mut buf)) {
        (1, Ok(stat)) if stat.pid == pid => cached_stamp_of(stat.start).unwrap_or(0),
        _ => 0,
    };
    let me = Owner { tid: pid, stamp };
    PROCESS.store(me.bits(), Ordering::Relaxed);
    me
}

/// [`process`], after making sure the cached `/proc` checks it relies on
/// have run (they allocate): call it where allocating is fine, before the
/// identity may be needed in a forked child.
pub(crate) fn process_prepared() -> Owner {
    crate::sys::atfork::ensure_handlers();
    let _ = proc_is_ours();
    let _ = boottime_offset_ticks();
    process()
}

/// Room for one `/proc/<tid>/stat` line (52 numeric fields and a name of
/// at most 64 bytes fit many times over).
const STAT_BYTES: usize = 2048;

/// Reads `/proc/<tid>/stat` into `buf` and parses it, with no allocation
/// (it runs in the atfork child handler too). `InvalidData` for a line
/// that does not fit or does not parse; the open's error otherwise.
fn read_stat_into(tid: u32, buf: &mut [u8; STAT_BYTES]) -> std::io::Result<Stat> {
    use std::io::{Error, ErrorKind, Write};
    let bad = || Error::new(ErrorKind::InvalidData, "unexpected stat format");
    let mut path = [0u8; 32];
    let len = {
        let mut w = &mut path[..31];
        write!(w, "/proc/{tid}/stat").map_err(|_| bad())?;
        31 - w.len()
    };
    let path = std::ffi::CStr::from_bytes_with_nul(&path[..=len]).map_err(|_| bad())?;
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(&fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if n == buf.len() {
        return Err(bad());
    }
    parse_stat(&buf[..n]).ok_or_else(bad)
}

/// This thread's owner record: its TID and start stamp, cached per thread.
#[inline]
pub(crate) fn current() -> Owner {
    ME.try_with(|c| match c.get() {
        Some(me) => me,
        None => {
            let me = lookup_current();
            c.set(Some(me));
            me
        }
    })
    // During thread-local teardown: look it up every time.
    .unwrap_or_else(|_| lookup_current())
}

#[cold]
fn lookup_current() -> Owner {
    crate::sys::atfork::ensure_handlers();
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    // A stamp we cannot read, or one from a /proc that is not ours, stays 0
    // ("unknown"): checkers then fall back to existence alone.
    let stamp = match (proc_is_ours(), read_stat(tid)) {
        (true, Ok(stat)) if stat.pid == tid => stamp_of(stat.start),
        _ => 0,
    };
    Owner { tid, stamp }
}

/// The 32-bit stamp for a start time (clock ticks since boot, as `/proc`
/// shows it to this process): shifted back by this process's boot-time
/// namespace offset, truncated, never 0 (0 means "unknown").
fn stamp_of(start: u64) -> u32 {
    (start.wrapping_sub(boottime_offset_ticks()) as u32).max(1)
}

/// [`stamp_of`] if the boot-time offset is known already (no file read).
fn cached_stamp_of(start: u64) -> Option<u32> {
    let ticks = BOOTTIME_TICKS.load(Ordering::Relaxed);
    (ticks != u32::MAX).then(|| (start.wrapping_sub(u64::from(ticks)) as u32).max(1))
}

/// What `/proc/<tid>/stat` says about a task.
struct Stat {
    pid: u32,
    state: u8,
    start: u64,
}

/// Reads and parses `/proc/<tid>/stat`. `Err` carries the OS error (or
/// `InvalidData` for a format we do not understand).
fn read_stat(tid: u32) -> std::io::Result<Stat> {
    read_stat_into(tid, &mut [0; STAT_BYTES])
}

/// Parses "pid (comm) state ppid ... starttime(22) ...". The name may hold
/// spaces, parentheses and non-UTF-8 bytes: fields resume after the last ')'.
fn parse_stat(bytes: &[u8]) -> Option<Stat> {
    let open = bytes.iter().position(|&b| b == b'(')?;
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let pid = std::str::from_utf8(&bytes[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let mut fields = bytes[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // After the state come fields 4..=21; starttime is field 22.
    let start = std::str::from_utf8(fields.nth(18)?).ok()?.parse().ok()?;
    Some(Stat { pid, state, start })
}

/// 0: not checked yet; 1: `/proc` is this process's; 2: it is not.
static PROC_OURS: AtomicU32 = AtomicU32::new(0);

/// Whether `/proc` shows this process's PID namespace (so TIDs from
/// `gettid` name the same tasks there). Checked once per process.
fn proc_is_ours() -> bool {
    match PROC_OURS.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let tid = rustix::thread::gettid().as_raw_nonzero().get();
            let want = format!("{}/task/{tid}", std::process::id());
            let ours = std::fs::read_link("/proc/thread-self")
                .is_ok_and(|p| p.as_os_str() == want.as_str());
            PROC_OURS.store(if ours { 1 } else { 2 }, Ordering::Relaxed);
            ours
        }
    }
}

/// This process's boot-time namespace offset in clock ticks (0 outside a
/// time namespace, or where the kernel has none).
fn boottime_offset_ticks() -> u64 {
    let cached = BOOTTIME_TICKS.load(Ordering::Relaxed);
    if cached != u32::MAX {
        return u64::from(cached);
    }
    let ticks = std::fs::read_to_string("/proc/self/timens_offsets")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("boottime"))?;
            let mut it = line.split_whitespace().skip(1);
            let secs: i64 = it.next()?.parse().ok()?;
            let nanos: i64 = it.next()?.parse().ok()?;
            // SAFETY: sysconf has no memory-safety preconditions.
            let hz = i64::from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as i32).max(1);
            Some((secs * hz + nanos * hz / 1_000_000_000) as u64)
        })
        .unwrap_or(0);
    BOOTTIME_TICKS.store(
        u32::try_from(ticks).unwrap_or(u32::MAX - 1),
        Ordering::Relaxed,
    );
    ticks
}

/// The boot-time namespace offset in clock ticks, `u32::MAX` until read.
static BOOTTIME_TICKS: AtomicU32 = AtomicU32::new(u32::MAX);

/// Whether a task with this TID exists in our PID namespace, by `kill(tid,
/// 0)`, which `hidepid` does not affect.
fn task_exists(tid: u32) -> bool {
    let Ok(tid) = libc::pid_t::try_from(tid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks existence and permission.
    let r = unsafe { libc::kill(tid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Liveness from `/proc/<tid>/stat`: gone, a zombie, or a different task
/// under the same TID (another start time) means dead. Anything uncertain
/// means alive.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcLiveness;

// SAFETY: reports dead only when /proc is this PID namespace's and either
// the task does not exist (per /proc and kill), is a zombie or dead task, or
// is a task that started at another time than the recorded owner (both
// stamps normalised to the boot-time namespace); a running owner has none of
// these.
unsafe impl Liveness for ProcLiveness {
    fn is_dead(&self, owner: Owner) -> bool {
        if !proc_is_ours() {
            return false;
        }
        match read_stat(owner.tid) {
            Ok(stat) => {
                stat.pid == owner.tid
                    && (matches!(stat.state, b'Z' | b'X' | b'x')
                        || (owner.stamp != 0 && stamp_of(stat.start) != owner.stamp))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => !task_exists(owner.tid),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn me_is_alive_and_a_gone_tid_is_dead() {
        let me = current();
        assert_eq!(me, current());
        assert_ne!(me.stamp, 0);
        assert!(!ProcLiveness.is_dead(me));
        // Same TID, another start time: a reused TID.
        assert!(ProcLiveness.is_dead(Owner {
            stamp: me.stamp.wrapping_add(7).max(1),
            ..me
        }));
        // Unknown stamp: existence alone decides.
        assert!(!ProcLiveness.is_dead(Owner { stamp: 0, ..me }));
        // A thread that has exited: its /proc entry goes a little after
        // join returns, so poll (with a deadline).
        let gone = std::thread::spawn(current).join().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while !ProcLiveness.is_dead(gone) {
            assert!(Instant::now() < end, "an exited thread never looked dead");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn stat_parsing_survives_odd_names() {
        let line =
            b"4242 (a (b) \xff\xfe) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99999 20 21";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.pid, s.state, s.start), (4242, b'S', 99999));
        assert!(parse_stat(b"garbage").is_none());
        assert!(parse_stat(b"1 (x) S 1").is_none());
    }
}
