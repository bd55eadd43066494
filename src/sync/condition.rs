//! `Condition`: a process-shared condition variable used with [`Mutex`].

use std::fmt;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::shm::header::{Expect, ObjectKind, ObjectLayout};
use crate::shm::named::SharedMemory;
use crate::shm::object::{Object, Placed, Token};
use crate::algo::wait::deadline;
use crate::shm::object::Place;
use crate::sync::mutex::MutexGuard;
use crate::sync::poison::{LockResult, OwnerDied};
use crate::algo::condvar::{ALL, RawCondvar};
use crate::sys::futex::Futex;

/// The shared state: the sequence word sleepers wait on, and how many sleep.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct CondState {
    seq: u32,
    waiters: u32,
}

/// Whether a timed condition wait returned because its time ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// `true` if the wait ended by timeout rather than by a notification.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// A process-shared condition variable: Python's
/// `multiprocessing.Condition`, shaped like `std::sync::Condvar`.
///
/// It waits with the guard of any [`Mutex`](crate::Mutex) (use one mutex per
/// condition): [`wait`](Self::wait) atomically releases the mutex and sleeps
/// on a shared futex, and locks it again before returning. Notifying makes no
/// system call when nobody waits. Wake-ups can be spurious: test your
/// predicate in a loop, or use [`wait_while`](Self::wait_while).
///
/// If the mutex's holder died while this thread slept, the re-lock reports
/// it: the guard comes back inside [`OwnerDied`].
///
/// # Examples
///
/// ```
/// use multiproc::{Condition, Mutex};
/// # fn main() -> multiproc::Result<()> {
/// let ready = Mutex::new(0u8)?;
/// let cond = Condition::new()?;
/// // A producer (normally another process) sets the flag and notifies.
/// *ready.lock().unwrap() = 1;
/// cond.notify_all();
/// // A consumer waits until the flag is set.
/// let g = cond.wait_while(ready.lock().unwrap(), |r| *r == 0).unwrap();
/// assert_eq!(*g, 1);
/// # Ok(())
/// # }
/// ```
pub struct Condition {
    obj: Placed,
}

impl Clone for Condition {
    fn clone(&self) -> Self {
        Condition {
            obj: self.obj.clone(),
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("place", &self.obj)
            .finish_non_exhaustive()
    }
}

impl Condition {
    /// Places a condition variable in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a new segment cannot be made.
    pub fn new() -> Result<Self> {
        Self::make(Place::Arena)
    }

    /// Places a condition variable at `offset` of a named segment.
    ///
    /// # Errors
    ///
    /// As [`Value::create_at`](crate::Value::create_at).
    pub fn create_at(shm: &SharedMemory, offset: usize) -> Result<Self> {
        Self::make(Place::At(shm, offset))
    }

    fn make(place: Place<'_>) -> Result<Self> {
        let layout = ObjectLayout::new::<CondState>(ObjectKind::Condition, 1)?;
        Ok(Self::over(place.make(layout, |_| {})?))
    }

    fn over(obj: Placed) -> Self {
        Condition { obj }
    }

    /// Releases `guard`'s mutex, sleeps until notified (or spuriously), and
    /// locks the mutex again.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (with the re-acquired guard) if the mutex's holder died
    /// meanwhile.
    pub fn wait<'a, T: Pod>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_until(guard, None)
            .map(|(g, _)| g)
            .map_err(|e| OwnerDied::new(e.into_inner().0))
    }

    /// As [`wait`](Self::wait), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.wait_until(guard, deadline(timeout))
    }

    /// Waits while `condition` holds for the guarded value, then returns the
    /// guard (the condition is false then).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_while<'a, T: Pod, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> LockResult<MutexGuard<'a, T>>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// As [`wait_while`](Self::wait_while), giving up after `timeout`; the
    /// result says whether the time ran out with the condition still true.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout_while<'a, T: Pod, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: F,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)>
    where
        F: FnMut(&mut T) -> bool,
    {
        let end = deadline(timeout);
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            let (g, result) = self.wait_until(guard, end)?;
            guard = g;
            if result.timed_out() {
                let still = condition(&mut *guard);
                return Ok((guard, WaitTimeoutResult(still)));
            }
        }
    }

    /// Python's `wait_for(predicate, timeout)`: waits until `predicate`
    /// holds, for at most `timeout`, and returns the guard with the
    /// predicate's last value (`false` means the time ran out first). The
    /// predicate has Python's sense, the opposite of
    /// [`wait_timeout_while`](Self::wait_timeout_while)'s condition.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Condition, Mutex};
    /// # fn main() -> multiproc::Result<()> {
    /// let items = Mutex::new(0u32)?;
    /// let cond = Condition::new()?;
    /// let (g, ok) = cond
    ///     .wait_for(items.lock().unwrap(), |n| *n > 0, Duration::from_millis(5))
    ///     .unwrap();
    /// assert!(!ok); // nobody produced anything
    /// drop(g);
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_for<'a, T: Pod, F>(
        &self,
        guard: MutexGuard<'a, T>,
        mut predicate: F,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, bool)>
    where
        F: FnMut(&mut T) -> bool,
    {
        let not = |v: &mut T| !predicate(v);
        match self.wait_timeout_while(guard, timeout, not) {
            Ok((g, r)) => Ok((g, !r.timed_out())),
            Err(died) => Err(died.map(|(g, r)| (g, !r.timed_out()))),
        }
    }

    fn wait_until<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        end: Option<Instant>,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let (seq, waiters) = (self.obj.state_u32(0), self.obj.state_u32(1));
        let token = RawCondvar::prepare(seq, waiters);
        let (timed_out, relocked) = guard.unlocked(|| {
            let timeout = match end {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return !RawCondvar::moved(seq, token),
                },
            };
            RawCondvar::sleep(seq, token, &Futex, timeout);
            // A notification that arrived as the time ran out still counts
            // as a notification (the sequence moved), so no notify_one is
            // swallowed by a waiter that then reports a timeout.
            end.is_some_and(|d| Instant::now() >= d) && !RawCondvar::moved(seq, token)
        });
        RawCondvar::finish(waiters);
        let result = WaitTimeoutResult(timed_out);
        match relocked {
            Ok(g) => Ok((g, result)),
            Err(died) => Err(OwnerDied::new((died.into_inner(), result))),
        }
    }

    /// Wakes one waiter, if any (no system call if none).
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`; no system call if
    /// nobody waits).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let cond = multiproc::Condition::new()?;
    /// cond.notify(2); // nobody waits: nothing happens
    /// # Ok(())
    /// # }
    /// ```
    pub fn notify(&self, n: u32) {
        let n = n.min(ALL);
        RawCondvar::notify(self.obj.state_u32(0), self.obj.state_u32(1), &Futex, n);
    }

    /// Wakes every waiter (no system call if none).
    pub fn notify_all(&self) {
        self.notify(ALL);
    }
}

// SAFETY: a `CondState` (two `u32`s, used only atomically) at the data offset of a
// `Condition` header of its fingerprint, which is all the handle touches.
unsafe impl Object for Condition {
    const KIND: ObjectKind = ObjectKind::Condition;

    fn expect() -> Expect {
        Expect::of::<CondState>()
    }

    fn from_placed(obj: Placed, _: u32, _: Token) -> Result<Self> {
        Ok(Self::over(obj))
    }

    fn placed(&self) -> &Placed {
        &self.obj
    }
}

/// Encodes the handle as its [`Descriptor`](crate::Descriptor).
impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.serialize_object(s)
    }
}

/// Attaches to the object an encoded [`Descriptor`](crate::Descriptor) names.
impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::deserialize_object(d)
    }
}
