//! The errors of the ring's operations: [`TryPushError`], [`TryPopError`]
//! and [`Closed`].

/// A push refused without blocking; the value comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TryPushError<T> {
    /// The ring is full (or, from a timed push, was still full at the
    /// deadline).
    Full(T),
    /// The ring is closed.
    Closed(T),
}

impl<T> TryPushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Full(v) | TryPushError::Closed(v) => v,
        }
    }

    /// Whether the ring was full (rather than closed).
    pub fn is_full(&self) -> bool {
        matches!(self, TryPushError::Full(_))
    }

    /// Whether the ring was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryPushError::Closed(_))
    }
}

impl<T> std::fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("Full(..)"),
            TryPushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> std::fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPushError::Full(_) => f.write_str("the queue is full"),
            TryPushError::Closed(_) => f.write_str("the queue is closed"),
        }
    }
}

impl<T> std::error::Error for TryPushError<T> {}

/// A pop that got no item without blocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryPopError {
    /// The ring is empty (or, from a timed pop, was still empty at the
    /// deadline) but not closed.
    #[error("the queue is empty")]
    Empty,
    /// The ring is closed and every item was taken.
    #[error("the queue is closed and empty")]
    Closed,
}

/// The channel is closed: a blocking push hands its value back
/// (`Closed<T>`), a blocking pop reports that every item was taken
/// (`Closed`, that is `Closed<()>`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Closed<T = ()>(pub T);

impl<T> std::fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closed(..)")
    }
}

impl<T> std::fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the queue is closed")
    }
}

impl<T> std::error::Error for Closed<T> {}
