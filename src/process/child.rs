//! A started child as its parent sees it: pid, pidfd, status channel, and
//! its exit status once reaped.
//!
//! Reaping names the child exactly: `waitid(P_PIDFD)` on its pidfd (or
//! `waitid(P_PID)` on its pid where pidfds are unavailable), never
//! `waitpid(-1)`, which would steal other code's children. Waiting sleeps in
//! `poll` on the pidfd, which becomes readable when the child exits. Signals
//! go through the pidfd too, so a signal can never reach another process
//! that reused the pid after the child was reaped.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, pidfd_open, waitid};

use crate::error::{Error, Result, SpawnFailure};
use crate::process::exit::Failure;
use crate::process::status::Inbox;

/// A child process started by this process.
#[derive(Debug)]
pub(crate) struct Child {
    pid: Pid,
    /// `None` where `pidfd_open` is unavailable (Linux before 5.3, or a
    /// seccomp filter): then waits poll with naps and signals use the pid,
    /// under the state lock so the child cannot be reaped meanwhile.
    pidfd: Option<OwnedFd>,
    /// Read end of the status channel, non-blocking.
    status: OwnedFd,
    name: String,
    daemon: bool,
    /// The process that started the child (a forked copy of the table of
    /// children does not own its entries).
    owner: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Python's exit code once reaped: the code, or minus the signal.
    exit: Option<i32>,
    /// Someone else reaped the child (`waitpid(-1)`, or `SIGCHLD` set to
    /// `SIG_IGN`): its status is gone.
    lost: bool,
    inbox: Inbox,
}

impl Child {
    /// Takes charge of child `pid`, whose status channel's read end is
    /// `status` (made non-blocking here).
    pub(crate) fn new(pid: Pid, status: OwnedFd, name: String, daemon: bool) -> Child {
        let _ = rustix::fs::fcntl_setfl(&status, rustix::fs::OFlags::NONBLOCK);
        Child {
            pid,
            pidfd: pidfd_open(pid, PidfdFlags::empty()).ok(),
            status,
            name,
            daemon,
            owner: std::process::id(),
            state: Mutex::new(State::default()),
        }
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn daemon(&self) -> bool {
        self.daemon
    }

    /// Whether this process started the child (and may reap it).
    pub(crate) fn owned_here(&self) -> bool {
        self.owner == std::process::id()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is as good.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reaps the child if it has exited; its exit code then.
    pub(crate) fn poll(&self) -> Result<Option<i32>> {
        let mut st = self.lock();
        self.reap(&mut st)
    }

    fn reap(&self, st: &mut State) -> Result<Option<i32>> {
        if let Some(code) = st.exit {
            return Ok(Some(code));
        }
        if st.lost {
            return Err(lost());
        }
        let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        let r = loop {
            let r = match &self.pidfd {
                Some(fd) => waitid(WaitId::PidFd(fd.as_fd()), opts),
                None => waitid(WaitId::Pid(self.pid), opts),
            };
            if !matches!(r, Err(Errno::INTR)) {
                break r;
            }
        };
        match r {
            Ok(Some(status)) => {
                let code = match (status.exit_status(), status.terminating_signal()) {
                    (_, Some(sig)) if status.killed() || status.dumped() => -sig,
                    (Some(code), _) => code,
                    // WEXITED reports only exits and deaths by signal.
                    _ => -1,
                };
                st.exit = Some(code);
                // Everything the child wrote is in the pipe by now.
                st.inbox.fill(self.status.as_fd());
                Ok(Some(code))
            }
            Ok(None) => Ok(None),
            Err(Errno::CHILD) => {
                st.lost = true;
                Err(lost())
            }
            Err(e) => Err(Error::io("waitid", e)),
        }
    }

    /// Waits until the child exits or `deadline` passes; its exit code, or
    /// `None` at the deadline. Sleeps in `poll` on the pidfd.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Result<Option<i32>> {
        let mut nap = Duration::from_micros(100);
        loop {
            if let Some(code) = self.poll()? {
                return Ok(Some(code));
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            match &self.pidfd {
                Some(fd) => {
                    let ts = left.and_then(|l| Timespec::try_from(l).ok());
                    let mut fds = [PollFd::new(fd, PollFlags::IN)];
                    match poll(&mut fds, ts.as_ref()) {
                        Ok(_) | Err(Errno::INTR) => {}
                        Err(e) => return Err(Error::io("poll", e)),
                    }
                }
                None => {
                    std::thread::sleep(left.map_or(nap, |l| l.min(nap)));
                    nap = (nap * 2).min(Duration::from_millis(10));
                }
            }
        }
    }

    /// Sends `sig` unless the child was already reaped.
    pub(crate) fn signal(&self, sig: Signal) -> Result<()> {
        // Holding the state lock keeps the child unreaped while we signal
        // it, which the pid fallback needs (a reaped pid can be reused).
        let st = self.lock();
        if st.exit.is_some() || st.lost {
            return Ok(());
        }
        let r = match &self.pidfd {
            Some(fd) => rustix::process::pidfd_send_signal(fd, sig),
            None => rustix::process::kill_process(self.pid, sig),
        };
        drop(st);
        match r {
            // ESRCH: it has exited and waits to be reaped.
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(Error::io("pidfd_send_signal", e)),
        }
    }

    /// The failure the child reported, if any (read so far).
    pub(crate) fn failure(&self) -> Option<Failure> {
        let mut st = self.lock();
        if st.exit.is_none() {
            st.inbox.fill(self.status.as_fd());
        }
        st.inbox.failure.clone()
    }

    /// Waits for a spawned child's handshake (the `STARTED` record). On
    /// failure the child has been reaped (killed first if it stayed silent
    /// past `timeout`), and the error says why.
    pub(crate) fn handshake(&self, timeout: Duration) -> std::result::Result<(), SpawnFailure> {
        let deadline = Instant::now() + timeout;
        let mut watch_status = true;
        loop {
            {
                let mut st = self.lock();
                st.inbox.fill(self.status.as_fd());
                let exited = self.reap(&mut st).map_err(|e| match e {
                    Error::Io { op, source } => SpawnFailure::Wait { op, source },
                    other => SpawnFailure::Wait {
                        op: "waitid",
                        source: std::io::Error::other(other.to_string()),
                    },
                })?;
                if st.inbox.started {
                    return Ok(());
                }
                if let Some(code) = exited {
                    return Err(match &st.inbox.failure {
                        Some(f) => SpawnFailure::Refused {
                            code,
                            message: f.message().to_owned(),
                        },
                        None => SpawnFailure::InitMissing { code },
                    });
                }
                // Every write end is closed but the child lives: it closed
                // the descriptor itself. Only its exit can end the wait now.
                watch_status &= !st.inbox.closed;
            }
            let left = match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => {
                    let _ = self.signal(Signal::KILL);
                    let _ = self.wait(None);
                    return Err(SpawnFailure::Silent { timeout });
                }
            };
            // Without a pidfd, wake now and then to look for an exit.
            let slice = if self.pidfd.is_some() {
                left
            } else {
                left.min(Duration::from_millis(10))
            };
            let ts = Timespec::try_from(slice).ok();
            let mut fds = Vec::with_capacity(2);
            if watch_status {
                fds.push(PollFd::new(&self.status, PollFlags::IN));
            }
            if let Some(fd) = &self.pidfd {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            match poll(&mut fds, ts.as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    let _ = self.signal(Signal::KILL);
                    let _ = self.wait(None);
                    return Err(SpawnFailure::Wait {
                        op: "poll",
                        source: e.into(),
                    });
                }
            }
        }
    }
}


fn lost() -> Error {
    Error::io(
        "waitid (the child was reaped elsewhere: a waitpid(-1), or SIGCHLD ignored)",
        Errno::CHILD,
    )
}
