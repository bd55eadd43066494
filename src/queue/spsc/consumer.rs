//! [`Consumer`], the receiving end of an [`spsc`](super) channel.

use std::fmt;
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{End, Mapped};
use crate::queue::ends::EndHold;
use crate::sys::futex::Futex;
use crate::algo::spsc::{RawConsumer, RingMemory};
use crate::algo::wait::deadline;
use crate::error::Result;
use crate::queue::error::{Closed, GetTimeoutError, TryGetError};
use crate::shm::header::{Expect, ObjectKind};
use crate::shm::object::{Object, Placed, Token};

/// The receiving end of an [`spsc`](super) channel.
///
/// See the [module documentation](super) for the one-consumer rule.
///
/// # Examples
///
/// ```
/// use multiproc::spsc::{self, TryGetError};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut tx, mut rx) = spsc::channel::<i64>(8)?;
/// assert_eq!(rx.try_pop(), Err(TryGetError::Empty));
/// tx.push(-1)?;
/// assert_eq!(rx.pop()?, -1);
/// # Ok(())
/// # }
/// ```
pub struct Consumer<T: Pod> {
    /// This handle's share in the process's hold on its end (first, so it
    /// drops before the mapping `raw` keeps).
    _hold: EndHold,
    /// When this handle last looked whether the other end is gone
    /// (`coarse_ms`), for the calls that do not wait.
    looked: u64,
    raw: RawConsumer<Mapped<T>>,
}

impl<T: Pod> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.raw.memory().fmt_end(f, "Consumer", self.raw.is_light())
    }
}

impl<T: Pod> Consumer<T> {
    pub(super) fn over(obj: Placed) -> Self {
        let mem = Mapped::new(obj, End::Consumer);
        Consumer {
            _hold: EndHold::new(mem.own_table()),
            looked: 0,
            raw: RawConsumer::new(mem),
        }
    }

    /// Takes the oldest value, sleeping while the channel is empty.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the channel is closed and every value was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut tx, mut rx) = multiproc::spsc::channel::<u32>(4)?;
    /// tx.push(1)?;
    /// tx.close();
    /// assert_eq!(rx.pop()?, 1);
    /// assert!(rx.pop().is_err());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn pop(&mut self) -> std::result::Result<T, Closed> {
        loop {
            match self.raw.pop(None) {
                Ok(v) => return Ok(v),
                Err(TryGetError::Closed) => return Err(Closed(())),
                // Without a deadline the wait only ends with an item or close.
                Err(TryGetError::Empty) => {}
            }
        }
    }

    /// Takes the oldest value if there is one, without blocking (Python's
    /// `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`], or [`TryGetError::Closed`] once the channel
    /// is closed and drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::spsc::{self, TryGetError};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut tx, mut rx) = spsc::channel::<u8>(4)?;
    /// assert_eq!(rx.try_pop(), Err(TryGetError::Empty));
    /// tx.push(9)?;
    /// assert_eq!(rx.try_pop(), Ok(9));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_pop(&mut self) -> std::result::Result<T, TryGetError> {
        match self.raw.try_pop() {
            Err(TryGetError::Empty) => self.empty_or_gone(),
            done => done,
        }
    }

    /// After an `Empty`: if the producer end is gone for good (looked at
    /// most every 10 ms), closes the channel and pops once more (a value
    /// pushed before the end went, or `Closed`).
    #[cold]
    fn empty_or_gone(&mut self) -> std::result::Result<T, TryGetError> {
        if !self.raw.memory().peer_gone_looked(&mut self.looked) {
            return Err(TryGetError::Empty);
        }
        self.raw.memory().state().close(&Futex);
        self.raw.try_pop()
    }

    /// Takes the oldest value, sleeping while the channel is empty, for at
    /// most `timeout`.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`] if the channel was still empty when the
    /// timeout elapsed, [`GetTimeoutError::Closed`] once it is closed and
    /// drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::spsc::{self, GetTimeoutError};
    /// use std::time::Duration;
    /// # fn main() -> multiproc::Result<()> {
    /// let (_tx, mut rx) = spsc::channel::<u8>(4)?;
    /// assert_eq!(rx.pop_timeout(Duration::from_millis(5)), Err(GetTimeoutError::Timeout));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn pop_timeout(&mut self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        // The clock is read only if the ring is empty now.
        match self.raw.try_pop() {
            Err(TryGetError::Empty) => match self.raw.pop(deadline(timeout)) {
                Err(TryGetError::Empty) => self.empty_or_gone(),
                done => done,
            }
            .map_err(Into::into),
            done => done.map_err(Into::into),
        }
    }

    /// Takes up to `dst.len()` values into `dst`, oldest first, publishing
    /// the new position once; returns how many. Never blocks; returns 0
    /// when the channel is empty (see [`try_pop`](Self::try_pop) to tell
    /// empty from closed).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut tx, mut rx) = multiproc::spsc::channel::<u8>(8)?;
    /// tx.push_slice(&[1, 2, 3]);
    /// let mut buf = [0; 2];
    /// assert_eq!(rx.pop_into(&mut buf), 2);
    /// assert_eq!(buf, [1, 2]);
    /// assert_eq!(rx.pop_into(&mut buf), 1);
    /// assert_eq!(buf[0], 3);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn pop_into(&mut self, dst: &mut [T]) -> usize {
        self.raw.pop_into(dst)
    }

    ring_queries!();
}

// SAFETY: as for `Producer<T>`.
unsafe impl<T: Pod> Object for Consumer<T> {
    const KIND: ObjectKind = ObjectKind::Spsc;
    const LEN: Option<u64> = None;

    fn expect() -> Expect {
        Expect::of::<T>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.raw.memory().obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl<T: Pod> Serialize for Consumer<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Pod> Deserialize<'de> for Consumer<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
