//! Who this thread is, as a robust lock records it, and whether a recorded
//! owner still lives: the `/proc`-backed [`Liveness`].

use std::cell::Cell;
use std::sync::Once;

use crate::sync::raw::robust::{Liveness, Owner};

thread_local! {
    static ME: Cell<Option<Owner>> = const { Cell::new(None) };
}

/// Clears this thread's cached identity in a forked child, whose only thread
/// has a new TID. Runs as a `pthread_atfork` child handler.
extern "C" fn forget_identity_after_fork() {
    ME.with(|c| c.set(None));
}

/// This thread's owner record: its TID and start stamp, cached per thread.
#[inline]
pub(crate) fn current() -> Owner {
    ME.with(|c| match c.get() {
        Some(me) => me,
        None => {
            let me = lookup_current();
            c.set(Some(me));
            me
        }
    })
}

#[cold]
fn lookup_current() -> Owner {
    static ATFORK: Once = Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers a child handler that only touches this crate's
        // thread-local cache; never unregistered (the function is static).
        unsafe { libc::pthread_atfork(None, None, Some(forget_identity_after_fork)) };
    });
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    // A stamp we cannot read stays 0 ("unknown"): checkers then fall back to
    // existence alone rather than compare against a wrong value.
    let stamp = read_stat("/proc/thread-self/stat").map_or(0, |(_, start)| stamp_of(start));
    Owner { tid, stamp }
}

/// The 32-bit stamp for a start time; never 0, which means "unknown".
fn stamp_of(start: u64) -> u32 {
    (start as u32).max(1)
}

/// State letter and start time (field 22) of a `/proc/.../stat` file.
/// `Err` carries the OS error of the read.
fn read_stat(path: &str) -> std::io::Result<(u8, u64)> {
    let text = std::fs::read_to_string(path)?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
    // the fields start after the last ')'.
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected stat format");
    let rest = &text[text.rfind(')').ok_or_else(bad)? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields
        .next()
        .and_then(|s| s.bytes().next())
        .ok_or_else(bad)?;
    // After the state come fields 4..=21; starttime is field 22.
    let start = fields
        .nth(18)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((state, start))
}

/// Liveness from `/proc/<tid>/stat`: gone, a zombie, or a different thread
/// under the same TID (another start time) means dead. Any other failure to
/// read means "don't know", which is treated as alive.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcLiveness;

// SAFETY: reports dead only when the kernel says the TID does not exist, or
// exists as a zombie/dead task, or belongs to a thread that started at
// another time than the recorded owner; a running owner has none of these.
unsafe impl Liveness for ProcLiveness {
    fn is_dead(&self, owner: Owner) -> bool {
        match read_stat(&format!("/proc/{}/stat", owner.tid)) {
            Ok((state, start)) => {
                matches!(state, b'Z' | b'X' | b'x')
                    || (owner.stamp != 0 && stamp_of(start) != owner.stamp)
            }
            Err(e) => {
                e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A thread that has exited.
        let gone = std::thread::spawn(current).join().unwrap();
        assert!(ProcLiveness.is_dead(gone));
        // Unknown stamp: existence alone decides.
        assert!(!ProcLiveness.is_dead(Owner { stamp: 0, ..me }));
    }
}
