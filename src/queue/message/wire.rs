//! Sending and receiving one message through a ring: encode into a
//! per-thread buffer (an oversize message is refused before any slot is
//! claimed), copy into the slot; copy out and decode, the slot still
//! claimed.

use std::cell::Cell;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::algo::spsc::{TryPopError, TryPushError};
use crate::algo::wait::deadline;
use crate::queue::message::error::{RecvError, SendError};
use crate::queue::message::slot::{MsgMem, Ring, read_slot, write_slot};

thread_local! {
    /// Encoding and decoding scratch, reused between messages.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on an empty scratch buffer (this thread's, unless a nested
/// call has it), keeping the buffer for next time if it stayed small.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.try_with(Cell::take).unwrap_or_default();
    buf.clear();
    let r = f(&mut buf);
    if buf.capacity() <= 1 << 20 {
        let _ = SCRATCH.try_with(|c| c.set(buf));
    }
    r
}

/// How long a send or receive may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// Until the deadline (`None`: as long as it takes).
    Until(Option<Instant>),
    /// At most this long from the first miss (the clock is read only if
    /// the operation cannot complete at once).
    For(Duration),
}

impl Wait {
    /// Waiting at most `timeout`.
    pub(crate) fn at_most(timeout: Duration) -> Wait {
        Wait::For(timeout)
    }

    /// Whether running out of room or items means the time ran out (a
    /// timed wait), rather than "would block" (no wait).
    fn timed(self) -> bool {
        !matches!(self, Wait::No)
    }
}

/// Puts `bytes` (already checked against the slot room) into `ring`.
fn put_bytes(ring: &Ring, bytes: &[u8], wait: Wait) -> std::result::Result<(), TryPushError<()>> {
    let r = match wait {
        Wait::No => ring.try_put_with(bytes, write_slot),
        Wait::For(t) => match ring.try_put_with(bytes, write_slot) {
            Err(TryPushError::Full(b)) => ring.put_with(b, write_slot, deadline(t)),
            r => r,
        },
        Wait::Until(d) => loop {
            match ring.put_with(bytes, write_slot, d) {
                // Without a deadline the wait ends only with room or close.
                Err(TryPushError::Full(_)) if d.is_none() => {}
                r => break r,
            }
        },
    };
    r.map_err(|e| match e {
        TryPushError::Full(_) => TryPushError::Full(()),
        TryPushError::Closed(_) => TryPushError::Closed(()),
    })
}

/// Encodes `value` and puts it into `ring`.
pub(crate) fn send<T: Serialize>(
    ring: &Ring,
    value: T,
    wait: Wait,
) -> std::result::Result<(), SendError<T>> {
    let max = ring.memory().max_message_size();
    with_scratch(|buf| {
        let encoded = postcard::to_extend(&value, std::mem::take(buf));
        match encoded {
            Ok(b) => *buf = b,
            Err(e) => {
                return Err(SendError::Encode {
                    value,
                    reason: e.to_string(),
                });
            }
        }
        if buf.len() > max {
            return Err(SendError::TooLarge {
                value,
                size: buf.len(),
                max,
            });
        }
        put_bytes(ring, buf, wait).map_err(|e| match e {
            TryPushError::Full(()) if wait.timed() => SendError::Timeout(value),
            TryPushError::Full(()) => SendError::Full(value),
            TryPushError::Closed(()) => SendError::Closed(value),
        })
    })
}

/// Puts raw `bytes` as one message into `ring`.
pub(crate) fn send_bytes(
    ring: &Ring,
    bytes: &[u8],
    wait: Wait,
) -> std::result::Result<(), SendError<()>> {
    let max = ring.memory().max_message_size();
    if bytes.len() > max {
        return Err(SendError::TooLarge {
            value: (),
            size: bytes.len(),
            max,
        });
    }
    put_bytes(ring, bytes, wait).map_err(|e| match e {
        TryPushError::Full(()) if wait.timed() => SendError::Timeout(()),
        TryPushError::Full(()) => SendError::Full(()),
        TryPushError::Closed(()) => SendError::Closed(()),
    })
}

/// The decode error of a length word larger than its slot.
const OVERWRITTEN: &str = "message length larger than its slot (shared memory was overwritten)";

/// Takes the next message from `ring` and hands its bytes to `decode`,
/// while the message's slot is still claimed: a consumer that dies before
/// the decoded value is in its hands (in the copy, in a slow `Deserialize`,
/// in the wake of a waiting producer) leaves its claim behind, and the
/// producer that frees the slot counts the message in `lost()`. Only the
/// release of the slot, one load and the return come after.
pub(crate) fn recv_with<R>(
    ring: &Ring,
    wait: Wait,
    decode: impl Fn(&[u8]) -> std::result::Result<R, String>,
) -> std::result::Result<R, RecvError> {
    recv_taking(ring, wait, || {}, decode)
}

/// [`recv_with`], calling `took` for every message taken (decoded or not),
/// while the slot is still claimed: before the release that lets anyone
/// see the message gone from the ring.
pub(crate) fn recv_taking<R>(
    ring: &Ring,
    wait: Wait,
    took: impl Fn(),
    decode: impl Fn(&[u8]) -> std::result::Result<R, String>,
) -> std::result::Result<R, RecvError> {
    let read = |m: &MsgMem, i: usize| {
        took();
        with_scratch(|buf| match read_slot(m, i, buf) {
            Ok(()) => decode(buf).map_err(|reason| RecvError::Decode {
                len: buf.len(),
                reason,
            }),
            Err(len) => Err(RecvError::Decode {
                len,
                reason: OVERWRITTEN.to_owned(),
            }),
        })
    };
    let got = match wait {
        Wait::No => ring.try_get_with(read),
        Wait::For(t) => match ring.try_get_with(read) {
            Err(TryPopError::Empty) => ring.get_with(read, deadline(t)),
            r => r,
        },
        Wait::Until(d) => loop {
            match ring.get_with(read, d) {
                // Without a deadline the wait ends only with an item or
                // close.
                Err(TryPopError::Empty) if d.is_none() => {}
                r => break r,
            }
        },
    };
    match got {
        Ok(r) => r,
        Err(TryPopError::Empty) if wait.timed() => Err(RecvError::Timeout),
        Err(TryPopError::Empty) => Err(RecvError::Empty),
        Err(TryPopError::Closed) => Err(RecvError::Closed),
    }
}

/// Decodes one whole `T` from `bytes` (trailing bytes are an error).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(format!(
            "{} trailing bytes after a {}",
            rest.len(),
            std::any::type_name::<T>()
        )),
        Err(e) => Err(format!("not a {}: {e}", std::any::type_name::<T>())),
    }
}
