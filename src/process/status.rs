//! The status channel: a pipe from each child to its parent.
//!
//! The child writes a few records, each `[tag: u8][len: u32 LE][len bytes
//! of UTF-8]`: `STARTED` when a spawned child's [`init`](crate::init) found
//! its entry point (the handshake), then at most one failure record (a
//! panic message, an error the target returned, or a setup error). The
//! parent reads the pipe without blocking, during the handshake and once the
//! child has exited. It never waits for the end of the pipe: a sibling forked
//! meanwhile by another thread may hold a copy of the write end.
//!
//! A record is at most [`MAX_MESSAGE`] + 5 bytes and a child writes at most
//! two, far below the pipe's 64 KiB, so the child never blocks on a write.

use std::os::fd::{AsFd, BorrowedFd, RawFd};

use rustix::io::Errno;

use crate::process::exit::{Failure, FailureKind};

/// The spawned child found its entry point.
pub(crate) const STARTED: u8 = 1;
/// The target panicked; the message follows.
pub(crate) const PANIC: u8 = 2;
/// The target returned an error; its `Debug` form follows.
pub(crate) const ERROR: u8 = 3;
/// The entry point could not be set up (or not found); why follows.
pub(crate) const SETUP: u8 = 4;

/// Longest message sent (bytes); longer ones are cut at a `char` boundary.
pub(crate) const MAX_MESSAGE: usize = 16 << 10;

/// The record tag for a failure kind.
pub(crate) fn tag_of(kind: FailureKind) -> u8 {
    match kind {
        FailureKind::Panic => PANIC,
        FailureKind::Error => ERROR,
        FailureKind::Setup => SETUP,
    }
}

/// Writes one record to descriptor `fd`, from the child. Errors are
/// ignored: a parent that is gone reads nothing anyway.
pub(crate) fn send(fd: RawFd, tag: u8, message: &str) {
    let mut end = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let msg = &message.as_bytes()[..end];
    let mut buf = Vec::with_capacity(5 + msg.len());
    buf.push(tag);
    buf.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    buf.extend_from_slice(msg);
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: writes bytes of a live buffer to a descriptor number; a
        // closed or foreign number fails (EBADF) or writes to that file,
        // which the caller rules out (it is the inherited status pipe).
        let n = unsafe { libc::write(fd, buf[off..].as_ptr().cast(), buf.len() - off) };
        if n > 0 {
            off += n as usize;
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            return;
        }
    }
}

/// What the parent has read from a child's status channel.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Bytes of an incomplete record.
    pending: Vec<u8>,
    /// The handshake arrived.
    pub(crate) started: bool,
    /// The failure the child reported, if any.
    pub(crate) failure: Option<Failure>,
    /// The write end was closed by every holder (the child exited).
    pub(crate) closed: bool,
}

impl Inbox {
    /// Reads whatever the (non-blocking) read end `fd` holds now.
    pub(crate) fn fill(&mut self, fd: BorrowedFd<'_>) {
        // Small: records are short, and every page written for the first
        // time after a fork costs a page fault.
        let mut buf = [0u8; 256];
        loop {
            match rustix::io::read(fd.as_fd(), &mut buf) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(Errno::INTR) => continue,
                // AGAIN: nothing more for now; anything else: nothing to read.
                Err(_) => break,
            }
        }
        self.parse();
    }

    fn parse(&mut self) {
        let mut at = 0;
        while self.pending.len() - at >= 5 {
            let tag = self.pending[at];
            let mut len = [0u8; 4];
            len.copy_from_slice(&self.pending[at + 1..at + 5]);
            let len = u32::from_le_bytes(len) as usize;
            if len > MAX_MESSAGE {
                // Not a record of ours: stop reading this channel.
                self.pending.clear();
                return;
            }
            if self.pending.len() - at - 5 < len {
                break;
            }
            let body = &self.pending[at + 5..at + 5 + len];
            let message = String::from_utf8_lossy(body).into_owned();
            let kind = match tag {
                STARTED => {
                    self.started = true;
                    None
                }
                PANIC => Some(FailureKind::Panic),
                ERROR => Some(FailureKind::Error),
                SETUP => Some(FailureKind::Setup),
                _ => None,
            };
            if let Some(kind) = kind {
                self.failure = Some(Failure::new(kind, message));
            }
            at += 5 + len;
        }
        self.pending.drain(..at);
    }
}
