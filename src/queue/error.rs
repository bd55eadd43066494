//! The errors of the `Pod` queues ([`Queue`](crate::Queue) and the
//! [`spsc`](crate::spsc) ends), one family for both, with one spelling of
//! each outcome across every queue and pipe of the crate: `Full` and
//! `Empty` from the `try_*` calls, `Timeout` from the `*_timeout` calls,
//! `Closed` from all of them. A value that was not put comes back inside
//! the error. Every one converts into [`Error`](crate::Error) with `?`.
//!
//! The non-blocking and blocking ones are the ring's own
//! (`algo::spsc`); the timed ones are here.

use std::fmt;

pub use crate::algo::spsc::{Closed, TryPopError as TryGetError, TryPushError as TryPutError};

/// A timed put that did not happen; the value comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PutTimeoutError<T> {
    /// Still full when the time ran out.
    Timeout(T),
    /// The queue is (or got) closed.
    Closed(T),
}

impl<T> PutTimeoutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutTimeoutError::Timeout(v) | PutTimeoutError::Closed(v) => v,
        }
    }

    /// Whether the time ran out (rather than the queue being closed).
    pub fn is_timeout(&self) -> bool {
        matches!(self, PutTimeoutError::Timeout(_))
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PutTimeoutError::Closed(_))
    }
}

/// The timed form of a refused put: `Full` at the deadline is a timeout.
impl<T> From<TryPutError<T>> for PutTimeoutError<T> {
    fn from(e: TryPutError<T>) -> Self {
        match e {
            TryPutError::Full(v) => PutTimeoutError::Timeout(v),
            TryPutError::Closed(v) => PutTimeoutError::Closed(v),
        }
    }
}

impl<T> fmt::Debug for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutTimeoutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("the queue was still full when the time ran out"),
            PutTimeoutError::Closed(_) => f.write_str("the queue is closed"),
        }
    }
}

impl<T> std::error::Error for PutTimeoutError<T> {}

/// A timed get that got no item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GetTimeoutError {
    /// Still empty (and open) when the time ran out.
    #[error("the queue was still empty when the time ran out")]
    Timeout,
    /// The queue is closed and every item was taken.
    #[error("the queue is closed and empty")]
    Closed,
}

/// The timed form of an empty get: `Empty` at the deadline is a timeout.
impl From<TryGetError> for GetTimeoutError {
    fn from(e: TryGetError) -> Self {
        match e {
            TryGetError::Empty => GetTimeoutError::Timeout,
            TryGetError::Closed => GetTimeoutError::Closed,
        }
    }
}

/// Drops the value and keeps the kind.
impl<T> From<Closed<T>> for crate::Error {
    fn from(_: Closed<T>) -> Self {
        crate::Error::Closed
    }
}

/// Drops the value and keeps the kind.
impl<T> From<TryPutError<T>> for crate::Error {
    fn from(e: TryPutError<T>) -> Self {
        match e {
            TryPutError::Full(_) => crate::Error::Full,
            TryPutError::Closed(_) => crate::Error::Closed,
        }
    }
}

/// Drops the value and keeps the kind.
impl<T> From<PutTimeoutError<T>> for crate::Error {
    fn from(e: PutTimeoutError<T>) -> Self {
        match e {
            PutTimeoutError::Timeout(_) => crate::Error::Timeout,
            PutTimeoutError::Closed(_) => crate::Error::Closed,
        }
    }
}

impl From<TryGetError> for crate::Error {
    fn from(e: TryGetError) -> Self {
        match e {
            TryGetError::Empty => crate::Error::Empty,
            TryGetError::Closed => crate::Error::Closed,
        }
    }
}

impl From<GetTimeoutError> for crate::Error {
    fn from(e: GetTimeoutError) -> Self {
        match e {
            GetTimeoutError::Timeout => crate::Error::Timeout,
            GetTimeoutError::Closed => crate::Error::Closed,
        }
    }
}
