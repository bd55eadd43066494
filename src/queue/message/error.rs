//! The errors of the message queues and pipes: one [`SendError`] and one
//! [`RecvError`] for every flavour (blocking, `try_*`, `*_timeout`), with
//! the spelling of every other queue (`Full`, `Empty`, `Timeout`,
//! `Closed`) and what encoding adds (`TooLarge`, `Encode`, `Decode`).

use std::fmt;

use crate::error::Error;

/// Why a message was not sent. Every variant but
/// [`Encode`](SendError::Encode)'s reason hands the value back.
#[non_exhaustive]
pub enum SendError<T> {
    /// No room (only from the non-blocking calls, `try_*`).
    Full(T),
    /// Still no room when the time ran out (only from the `*_timeout`
    /// calls).
    Timeout(T),
    /// The queue (or the connection) is closed.
    Closed(T),
    /// The encoded message is larger than the maximum message size set at
    /// creation: nothing was sent.
    TooLarge {
        /// The value.
        value: T,
        /// Its encoded size in bytes.
        size: usize,
        /// The maximum message size.
        max: usize,
    },
    /// The value's `Serialize` implementation failed: nothing was sent.
    Encode {
        /// The value.
        value: T,
        /// What the encoder said.
        reason: String,
    },
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(v)
            | SendError::Timeout(v)
            | SendError::Closed(v)
            | SendError::TooLarge { value: v, .. }
            | SendError::Encode { value: v, .. } => v,
        }
    }

    /// Whether there was no room.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }

    /// Whether the time ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::Timeout(_))
    }

    /// Whether the queue or connection is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }

    /// The same error without the value.
    fn forget(&self) -> SendError<()> {
        match self {
            SendError::Full(_) => SendError::Full(()),
            SendError::Timeout(_) => SendError::Timeout(()),
            SendError::Closed(_) => SendError::Closed(()),
            SendError::TooLarge { size, max, .. } => SendError::TooLarge {
                value: (),
                size: *size,
                max: *max,
            },
            SendError::Encode { reason, .. } => SendError::Encode {
                value: (),
                reason: reason.clone(),
            },
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.forget() {
            SendError::Full(()) => f.write_str("Full(..)"),
            SendError::Timeout(()) => f.write_str("Timeout(..)"),
            SendError::Closed(()) => f.write_str("Closed(..)"),
            SendError::TooLarge { size, max, .. } => f
                .debug_struct("TooLarge")
                .field("size", &size)
                .field("max", &max)
                .finish_non_exhaustive(),
            SendError::Encode { reason, .. } => f
                .debug_struct("Encode")
                .field("reason", &reason)
                .finish_non_exhaustive(),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("the queue is full"),
            SendError::Timeout(_) => f.write_str("the queue was still full when the time ran out"),
            SendError::Closed(_) => f.write_str("the queue is closed"),
            SendError::TooLarge { size, max, .. } => write!(
                f,
                "message of {size} bytes exceeds the maximum message size of {max} bytes"
            ),
            SendError::Encode { reason, .. } => write!(f, "cannot encode the message: {reason}"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Drops the value and keeps the kind.
impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Full(_) => Error::Full,
            SendError::Timeout(_) => Error::Timeout,
            SendError::Closed(_) => Error::Closed,
            SendError::TooLarge { size, max, .. } => Error::TooLarge { size, max },
            SendError::Encode { reason, .. } => Error::Encode { reason },
        }
    }
}

/// Why no message was received.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing to take (only from the non-blocking calls, `try_*`).
    Empty,
    /// Still nothing to take when the time ran out (only from the
    /// `*_timeout` calls).
    Timeout,
    /// Closed, and every message was taken.
    Closed,
    /// A message was taken but is not a valid encoding of the expected
    /// type (a sender of another type, [`send_bytes`](crate::Connection::send_bytes)
    /// data, or overwritten shared memory). The message is consumed; later
    /// ones are unaffected.
    Decode {
        /// The message's length in bytes.
        len: usize,
        /// What the decoder said.
        reason: String,
    },
}

impl RecvError {
    /// Whether there was nothing to take.
    pub fn is_empty(&self) -> bool {
        matches!(self, RecvError::Empty)
    }

    /// Whether the time ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvError::Timeout)
    }

    /// Whether the queue or connection is closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvError::Closed)
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("the queue is empty"),
            RecvError::Timeout => f.write_str("the queue was still empty when the time ran out"),
            RecvError::Closed => f.write_str("the queue is closed and empty"),
            RecvError::Decode { len, reason } => {
                write!(f, "cannot decode a message of {len} bytes: {reason}")
            }
        }
    }
}

impl std::error::Error for RecvError {}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Empty => Error::Empty,
            RecvError::Timeout => Error::Timeout,
            RecvError::Closed => Error::Closed,
            RecvError::Decode { len, reason } => Error::Decode { len, reason },
        }
    }
}
