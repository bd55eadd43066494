//! [`Producer`], the sending end of an [`spsc`](super) channel.

use std::fmt;
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{End, Mapped};
use crate::queue::ends::EndHold;
use crate::algo::spsc::{RawProducer, RingMemory};
use crate::algo::wait::deadline;
use crate::error::Result;
use crate::queue::error::{Closed, PutTimeoutError, TryPutError};
use crate::shm::header::{Expect, ObjectKind};
use crate::shm::object::{Object, Placed, Token};

/// The sending end of an [`spsc`](super) channel.
///
/// See the [module documentation](super) for the one-producer rule.
///
/// # Examples
///
/// ```
/// use multiproc::spsc::{self, TryPutError};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut tx, mut rx) = spsc::channel::<u32>(2)?;
/// tx.try_push(1)?;
/// tx.push(2)?;
/// assert!(matches!(tx.try_push(3), Err(TryPutError::Full(3))));
/// assert_eq!(rx.try_pop()?, 1);
/// # Ok(())
/// # }
/// ```
pub struct Producer<T: Pod> {
    /// This handle's share in the process's hold on its end (first, so it
    /// drops before the mapping `raw` keeps).
    _hold: EndHold,
    /// When this handle last looked whether the other end is gone
    /// (`coarse_ms`), for the calls that do not wait.
    looked: u64,
    raw: RawProducer<Mapped<T>>,
}

impl<T: Pod> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.raw.memory().fmt_end(f, "Producer", self.raw.is_light())
    }
}

impl<T: Pod> Producer<T> {
    pub(super) fn over(obj: Placed) -> Self {
        let mem = Mapped::new(obj, End::Producer);
        Producer {
            _hold: EndHold::new(mem.own_table()),
            looked: 0,
            raw: RawProducer::new(mem),
        }
    }

    /// Pushes `value`, sleeping while the channel is full.
    ///
    /// # Errors
    ///
    /// [`Closed`] with the value if the channel is (or gets) closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut tx, mut rx) = multiproc::spsc::channel::<u8>(1)?;
    /// tx.push(7)?;
    /// assert_eq!(rx.pop()?, 7);
    /// tx.close();
    /// assert_eq!(tx.push(8).unwrap_err().0, 8);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn push(&mut self, value: T) -> std::result::Result<(), Closed<T>> {
        loop {
            match self.raw.push(value, None) {
                Ok(()) => return Ok(()),
                Err(TryPutError::Closed(v)) => return Err(Closed(v)),
                // Without a deadline the wait only ends with room or close.
                Err(TryPutError::Full(_)) => {}
            }
        }
    }

    /// Pushes `value` if there is room, without blocking (Python's
    /// `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] or [`TryPutError::Closed`], with the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::spsc::{self, TryPutError};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut tx, _rx) = spsc::channel::<u8>(1)?;
    /// tx.try_push(1)?;
    /// assert_eq!(tx.try_push(2).unwrap_err().into_inner(), 2);
    /// tx.close();
    /// assert!(matches!(tx.try_push(3), Err(TryPutError::Closed(3))));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn try_push(&mut self, value: T) -> std::result::Result<(), TryPutError<T>> {
        match self.raw.try_push(value) {
            Err(TryPutError::Full(v)) => Err(self.full_or_gone(v)),
            done => done,
        }
    }

    /// After a `Full`: if the consumer end is gone for good (looked at most
    /// every 10 ms), closes the channel: `Closed` with the value, else
    /// `Full`.
    #[cold]
    fn full_or_gone(&mut self, value: T) -> TryPutError<T> {
        if self.raw.memory().peer_gone_looked(&mut self.looked) {
            self.close();
            TryPutError::Closed(value)
        } else {
            TryPutError::Full(value)
        }
    }

    /// Pushes `value`, sleeping while the channel is full, for at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] if the channel was still full when the
    /// timeout elapsed, [`PutTimeoutError::Closed`] if it is (or gets) closed; both
    /// with the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut tx, _rx) = multiproc::spsc::channel::<u8>(1)?;
    /// tx.push_timeout(1, Duration::from_millis(5))?;
    /// assert!(tx.push_timeout(2, Duration::from_millis(5)).unwrap_err().is_timeout());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn push_timeout(
        &mut self,
        value: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        // The clock is read only if the ring is full now.
        match self.raw.try_push(value) {
            Err(TryPutError::Full(v)) => match self.raw.push(v, deadline(timeout)) {
                Err(TryPutError::Full(v)) => Err(self.full_or_gone(v)),
                done => done,
            }
            .map_err(Into::into),
            done => done.map_err(Into::into),
        }
    }

    /// Pushes as many values of `src` as fit now, in order, publishing them
    /// at once; returns how many. Never blocks; returns 0 when the channel
    /// is full or closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut tx, mut rx) = multiproc::spsc::channel::<u16>(4)?;
    /// assert_eq!(tx.push_slice(&[1, 2, 3, 4, 5, 6]), 4);
    /// let mut got = [0; 8];
    /// assert_eq!(rx.pop_into(&mut got), 4);
    /// assert_eq!(got[..4], [1, 2, 3, 4]);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn push_slice(&mut self, src: &[T]) -> usize {
        self.raw.push_slice(src)
    }

    /// Closes the channel: later pushes fail with `Closed`, and the consumer
    /// drains what is left, then sees `Closed`. Wakes a sleeping consumer.
    /// Closing twice is harmless; there is no reopening.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::spsc::{self, TryGetError};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut tx, mut rx) = spsc::channel::<u8>(4)?;
    /// tx.push(1)?;
    /// tx.close();
    /// assert_eq!(rx.try_pop(), Ok(1));
    /// assert_eq!(rx.try_pop(), Err(TryGetError::Closed));
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&self) {
        self.raw.close();
    }

    ring_queries!();
}

// SAFETY: the ring state, then `len` slots of `T`, at the data offset of an `Spsc`
// header of `T`'s fingerprint: all an end reads and writes.
unsafe impl<T: Pod> Object for Producer<T> {
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
impl<T: Pod> Serialize for Producer<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de, T: Pod> Deserialize<'de> for Producer<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}

