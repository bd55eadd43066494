//! [`RingMemory`]: the memory a ring runs on (its state, slots and futex),
//! mapped or heap-allocated.

use super::state::SpscState;
use crate::algo::wait::Waiter;

/// The memory an SPSC ring lives in: its [`SpscState`], its slots and the
/// futex to sleep on.
///
/// # Safety
///
/// [`state`](Self::state) must return the same state and
/// [`capacity`](Self::capacity) the same non-zero value on every call for as
/// long as the value lives; the slot accessors must be valid for every
/// index below that capacity. Callers of the `unsafe` accessors promise
/// `index + len <= capacity`; the producer and consumer in this module never
/// access one slot at the same time except when the shared indices were
/// scribbled over (then the implementation must still be memory-safe, as
/// volatile copies of `Pod` values are).
///
/// [`receives_heavy_barrier`](Self::receives_heavy_barrier) may return
/// `true` only if every later [`heavy_barrier`](Self::heavy_barrier) that
/// returns `true`, issued by any user of a ring of this memory, makes every
/// thread of this process that may use the ring execute a full memory fence
/// (or pass through one, as a thread that is not running does) before it
/// returns: the light side of the asymmetric Dekker pair relies on it.
pub unsafe trait RingMemory {
    /// The slot type.
    type Item: Copy;
    /// The futex implementation sleepers use.
    type Waiter: Waiter;
    /// The shared index and wait words.
    fn state(&self) -> &SpscState;
    /// Number of slots (constant, at least 1).
    fn capacity(&self) -> usize;
    /// The futex to sleep on.
    fn waiter(&self) -> &Self::Waiter;
    /// Whether this process's threads take part in every
    /// [`heavy_barrier`](Self::heavy_barrier) (asked once, when an end is
    /// made, and only of a ring with
    /// [`Fencing::Asymmetric`](super::Fencing::Asymmetric)); an end whose
    /// answer is `false` publishes with `SeqCst` swaps.
    fn receives_heavy_barrier(&self) -> bool;
    /// The heavy half of an asymmetric fence: a full memory fence on every
    /// thread of every process that [receives](Self::receives_heavy_barrier)
    /// it, and on the caller's. Returns `false` if it could not be done
    /// (the waiter then sleeps in short slices).
    fn heavy_barrier(&self) -> bool;
    /// Whether a blocked end sleeps in slices ([`PEER_LOOK`](super::PEER_LOOK),
    /// doubling to [`PEER_LOOK_MAX`](super::PEER_LOOK_MAX)) and asks
    /// [`peer_gone`](Self::peer_gone) between them. Default: no, one
    /// unbroken wait.
    fn watches_peer(&self) -> bool {
        false
    }
    /// Whether the other end is held by nobody alive, for good: asked by an
    /// end that slept a slice and found nothing to do, which then closes
    /// the ring (pops drain, then report `Closed`; pushes fail). Default:
    /// never.
    fn peer_gone(&self) -> bool {
        false
    }
    /// Writes slot `index`.
    ///
    /// # Safety
    ///
    /// `index < capacity()`.
    unsafe fn write(&self, index: usize, value: Self::Item);
    /// Reads slot `index`.
    ///
    /// # Safety
    ///
    /// `index < capacity()`.
    unsafe fn read(&self, index: usize) -> Self::Item;
    /// Writes `src` to slots `index..index + src.len()`.
    ///
    /// # Safety
    ///
    /// `index + src.len() <= capacity()`.
    unsafe fn write_run(&self, index: usize, src: &[Self::Item]) {
        for (i, v) in src.iter().enumerate() {
            // SAFETY: index + i < index + src.len() <= capacity (caller).
            unsafe { self.write(index + i, *v) };
        }
    }
    /// Reads slots `index..index + dst.len()` into `dst`.
    ///
    /// # Safety
    ///
    /// `index + dst.len() <= capacity()`.
    unsafe fn read_run(&self, index: usize, dst: &mut [Self::Item]) {
        for (i, v) in dst.iter_mut().enumerate() {
            // SAFETY: index + i < index + dst.len() <= capacity (caller).
            *v = unsafe { self.read(index + i) };
        }
    }
}
