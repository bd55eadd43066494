//! A reusable barrier with Python's broken state, in one futex word.
//!
//! The word packs the round's arrivals, three flags and a generation:
//!
//! | bits | name | meaning |
//! |---|---|---|
//! | 0..15 | count | waiters inside `wait` for this round (arrived, or, once broken, not yet left) |
//! | 15 | [`BROKEN`] | the round was broken (timeout, `abort`, `reset` with waiters): every `wait` fails |
//! | 16 | [`RESETTING`] | a `reset` waits for the broken round's waiters to leave |
//! | 17 | [`SLEEPERS`] | someone may sleep on the word: the next release, break or reset must wake |
//! | 18..32 | generation | completed rounds (wrapping) |
//!
//! Rounds (Python's `threading.Barrier` states, with a generation so that
//! released waiters need not drain before the next round fills):
//!
//! - *filling*: each arrival adds one to `count` with a CAS; the one that
//!   makes it `parties` is the leader: it bumps the generation, zeroes
//!   `count` and the flags in the same CAS, and wakes all if [`SLEEPERS`] was
//!   on. A waiter is released when it sees the generation move.
//! - *broken*: a timed-out waiter (which leaves in the same CAS), `abort` or
//!   `reset` sets [`BROKEN`] and wakes all. Every waiter of the round then
//!   fails and leaves (`count - 1`); new arrivals fail at once.
//! - *resetting*: `reset` of a round with waiters inside also sets
//!   [`RESETTING`]; new arrivals wait for the waiters of the broken round to
//!   leave, and the last one to leave makes the barrier whole again. A
//!   waiter of the broken round thus always sees [`BROKEN`] with its own
//!   generation: the round's outcome stays in the word until all its waiters
//!   have read it.
//!
//! Sleepers set [`SLEEPERS`] with a CAS and sleep while the word is
//! unchanged; every transition a sleeper waits for clears the bit and wakes
//! all, so a round with nobody asleep makes no system call. Everything
//! happens on one word, so its modification order alone rules out lost
//! wake-ups. Limits: at most [`MAX_PARTIES`] parties; a released waiter that
//! sleeps through 2^14 further rounds (only possible with more threads than
//! parties) would miss its release.
//!
//! ## Dead waiters
//!
//! A process that dies inside `wait` stays counted: its round completes
//! when the others arrive. If the round breaks instead, the dead waiter
//! never leaves it, so a `reset` would never finish draining. A [`Roster`]
//! (who is inside `wait`, kept by the caller, e.g. a table of live threads
//! in shared memory) lets the barrier *heal* such a round: a waiter records
//! itself just before its arrival CAS and takes itself out after it left
//! (released, broken or timed out); once a reset is draining and the roster
//! holds no live thread, nobody counted in the round can still leave, so
//! the draining round is dropped (the barrier made whole, its sleepers
//! woken). Why that is safe: a live waiter counted in the word state `s`
//! recorded itself before the arrival CAS that `s` includes, and takes
//! itself out only after a leave CAS that changes the word, so a healer
//! that reads `s` (Acquire, after every arrival's Release RMW), then finds
//! no live waiter, then CASes from `s` cannot drop a live waiter's round.
//! The heal is tried by `reset`, by each live waiter of the draining round
//! as it leaves (after a `SeqCst` fence, so that of two last leavers at
//! least one sees the other gone), and by arrivals waiting for the drain,
//! which sleep in [`HEAL_SLICE`]s for it. Without a roster ([`NoRoster`])
//! nothing heals and the arrivals sleep without a slice.

use std::time::{Duration, Instant};

use crate::algo::wait::{SPIN_ROUNDS, WAKE_ALL, Waiter, backoff, time_left};
use crate::loom::atomic::{AtomicU32, Ordering, fence};

/// How long an arrival waiting for a reset's drain sleeps before it looks
/// whether the draining round's waiters are all dead (with a [`Roster`]).
pub const HEAL_SLICE: Duration = Duration::from_millis(10);

/// Who is inside [`RawBarrier::wait`], for healing a broken round that a dead
/// waiter never leaves (see the module docs).
pub trait Roster {
    /// Records the calling thread as inside `wait` (just before it arrives).
    fn enter(&self);
    /// Takes the calling thread's record out (after it left the round).
    fn leave(&self);
    /// Whether no thread that is still alive is recorded. `false` when
    /// unsure (a record that could not be kept, a liveness that cannot be
    /// told).
    fn all_dead(&self) -> bool;
    /// Whether healing is possible at all (`false` for [`NoRoster`]).
    fn heals(&self) -> bool {
        true
    }
}

/// No roster: the barrier never heals a round with a dead waiter (the
/// loom models of the plain protocol use it).
#[cfg_attr(not(loom), allow(dead_code))]
pub struct NoRoster;

impl Roster for NoRoster {
    #[inline]
    fn enter(&self) {}
    #[inline]
    fn leave(&self) {}
    #[inline]
    fn all_dead(&self) -> bool {
        false
    }
    #[inline]
    fn heals(&self) -> bool {
        false
    }
}

/// The arrival count bits.
pub const COUNT_MASK: u32 = (1 << 15) - 1;
/// The largest number of parties a barrier word can count.
pub const MAX_PARTIES: u32 = COUNT_MASK;
/// The round was broken.
pub const BROKEN: u32 = 1 << 15;
/// A reset waits for the broken round's waiters to leave.
pub const RESETTING: u32 = 1 << 16;
/// Someone may sleep on the word.
pub const SLEEPERS: u32 = 1 << 17;
/// One step of the generation.
const GEN_ONE: u32 = 1 << 18;
/// The generation bits.
const GEN_MASK: u32 = !(GEN_ONE - 1);

/// How a successful [`RawBarrier::wait`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Arrival order in the round, `0..parties`.
    pub index: u32,
    /// Whether this waiter completed the round (exactly one per round).
    pub leader: bool,
}

/// Why a [`RawBarrier::wait`] did not pass the barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// The round was, or became, broken by someone else (a timeout of
    /// another waiter, `abort`, `reset`).
    Broken,
    /// This waiter's deadline passed: it broke the round it had arrived in,
    /// or (during a `reset`) gave up before arriving.
    TimedOut,
}

/// Operations on a barrier word living anywhere (heap or shared memory). A
/// zero-sized namespace, like [`RobustLock`](super::robust::RobustLock).
pub struct RawBarrier;

impl RawBarrier {
    /// Arrives at the barrier and waits until `parties` waiters have arrived
    /// in this round.
    ///
    /// # Errors
    ///
    /// [`WaitError::Broken`] if the round is or becomes broken;
    /// [`WaitError::TimedOut`] if `deadline` passes first, which breaks the
    /// round for everybody (Python's semantics).
    pub fn wait<W: Waiter, R: Roster>(
        word: &AtomicU32,
        parties: u32,
        waiter: &W,
        roster: &R,
        deadline: Option<Instant>,
    ) -> Result<Arrival, WaitError> {
        // A count above MAX_PARTIES would carry into the flags.
        let parties = parties.min(MAX_PARTIES);
        // SYNC: Acquire (here and on every CAS failure below) pairs with the
        // Release half of the CASes in this file, for the state we act on.
        let mut s = word.load(Ordering::Acquire);
        // Whether this thread is in the roster now.
        let mut entered = false;
        // Step 1: arrive.
        loop {
            if s & RESETTING != 0 {
                // A reset waits for the broken round to drain; so do we,
                // out of the roster (we are not in that round), looking
                // after each slice whether its waiters all died.
                if entered {
                    roster.leave();
                    entered = false;
                }
                let Ok(timeout) = time_left(deadline) else {
                    return Err(WaitError::TimedOut);
                };
                let slice = if roster.heals() {
                    Some(timeout.map_or(HEAL_SLICE, |t| t.min(HEAL_SLICE)))
                } else {
                    timeout
                };
                let now = Self::sleep(word, waiter, s, slice);
                s = if now & RESETTING != 0 {
                    Self::heal(word, waiter, roster)
                } else {
                    now
                };
                continue;
            }
            if s & BROKEN != 0 {
                if entered {
                    roster.leave();
                }
                return Err(WaitError::Broken);
            }
            if !entered {
                // Recorded before the arrival CAS (whose Release publishes
                // the record to a healer that reads the count).
                roster.enter();
                entered = true;
            }
            let count = s & COUNT_MASK;
            if count + 1 >= parties {
                // Last arrival: release the round (count 0, flags off, next
                // generation).
                let next = (s & GEN_MASK).wrapping_add(GEN_ONE);
                // SYNC: Acquire pairs with the Release CASes of the earlier
                // arrivals (all modifications of the word are RMWs, so their
                // release sequences reach us); Release pairs with the Acquire
                // loads in Step 2 of the waiters we release.
                match Self::transition(word, waiter, s, next) {
                    Ok(()) => {
                        roster.leave();
                        return Ok(Arrival {
                            index: count,
                            leader: true,
                        });
                    }
                    Err(now) => s = now,
                }
            } else {
                // SYNC: Release pairs with the leader's Acquire above: what we
                // wrote before arriving is visible to whoever the round
                // releases.
                match word.compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        s += 1;
                        break;
                    }
                    Err(now) => s = now,
                }
            }
        }
        let index = (s & COUNT_MASK) - 1;
        let generation = s & GEN_MASK;
        let done = |s: u32| s & GEN_MASK != generation || s & BROKEN != 0;
        // Step 2: spin a little; the last party may be about to arrive.
        for round in 0..SPIN_ROUNDS {
            if done(s) {
                break;
            }
            backoff(round);
            // SYNC: Acquire pairs with the leader's Release CAS in Step 1.
            s = word.load(Ordering::Acquire);
        }
        // Step 3: sleep until released or broken.
        loop {
            if s & GEN_MASK != generation {
                roster.leave();
                return Ok(Arrival {
                    index,
                    leader: false,
                });
            }
            if s & BROKEN != 0 {
                Self::leave(word, waiter, roster, s);
                return Err(WaitError::Broken);
            }
            match time_left(deadline) {
                Ok(timeout) => s = Self::sleep(word, waiter, s, timeout),
                Err(()) => {
                    // Timed out: break the round and leave it in one step.
                    let broken = dec_count(s) | BROKEN;
                    match Self::transition(word, waiter, s, broken & !SLEEPERS) {
                        Ok(()) => {
                            roster.leave();
                            return Err(WaitError::TimedOut);
                        }
                        // Released or broken meanwhile: look again.
                        Err(now) => s = now,
                    }
                }
            }
        }
    }

    /// Breaks the current round: every waiter, now and until
    /// [`reset`](Self::reset), fails with [`WaitError::Broken`].
    pub fn abort<W: Waiter>(word: &AtomicU32, waiter: &W) {
        let mut s = word.load(Ordering::Acquire);
        while s & BROKEN == 0 {
            match Self::transition(word, waiter, s, (s | BROKEN) & !SLEEPERS) {
                Ok(()) => return,
                Err(now) => s = now,
            }
        }
    }

    /// Makes the barrier whole again. Waiters of the current round fail with
    /// [`WaitError::Broken`]; arrivals wait until they have left, then fill a new round.
    ///
    /// A round whose waiters are all dead (per `roster`) is dropped at once
    /// instead of drained.
    pub fn reset<W: Waiter, R: Roster>(word: &AtomicU32, waiter: &W, roster: &R) {
        let mut s = word.load(Ordering::Acquire);
        loop {
            if s & RESETTING != 0 {
                // A reset is already draining the broken round: heal it if
                // nobody alive is left in it.
                Self::heal(word, waiter, roster);
                return;
            }
            let next = if s & COUNT_MASK == 0 {
                // Nobody inside: whole at once (same generation).
                s & GEN_MASK
            } else {
                // Waiters inside: they fail and leave; the last one to leave
                // makes the barrier whole.
                (s | BROKEN | RESETTING) & !SLEEPERS
            };
            if next == s {
                return;
            }
            match Self::transition(word, waiter, s, next) {
                Ok(()) => {
                    if next & RESETTING != 0 {
                        Self::heal(word, waiter, roster);
                    }
                    return;
                }
                Err(now) => s = now,
            }
        }
    }

    /// Drops a draining round (makes the barrier whole, wakes its sleepers)
    /// if `roster` holds no live waiter; returns the word as it is after.
    /// See the module docs for why that cannot drop a live waiter's round.
    fn heal<W: Waiter, R: Roster>(word: &AtomicU32, waiter: &W, roster: &R) -> u32 {
        if !roster.heals() {
            // SYNC: Acquire pairs with the Release CASes in this file.
            return word.load(Ordering::Acquire);
        }
        // SYNC: SeqCst fence between this thread's own roster update (its
        // `leave`) and the scan below, pairing with the same fence of
        // another last leaver: at least one of the two sees the other's
        // record gone.
        fence(Ordering::SeqCst);
        // SYNC: Acquire pairs with every arrival's Release CAS (one release
        // sequence of RMWs), so the records made before them are visible
        // to the scan below.
        let mut s = word.load(Ordering::Acquire);
        while s & RESETTING != 0 && s & COUNT_MASK != 0 {
            if !roster.all_dead() {
                return s;
            }
            match Self::transition(word, waiter, s, s & GEN_MASK) {
                Ok(()) => return s & GEN_MASK,
                Err(now) => s = now,
            }
        }
        s
    }

    /// Whether the barrier is broken (a snapshot).
    #[inline]
    pub fn is_broken(word: &AtomicU32) -> bool {
        word.load(Ordering::Relaxed) & BROKEN != 0
    }

    /// Waiters in the current round (a snapshot; 0 when broken).
    #[inline]
    pub fn n_waiting(word: &AtomicU32) -> u32 {
        let s = word.load(Ordering::Relaxed);
        if s & BROKEN != 0 { 0 } else { s & COUNT_MASK }
    }

    /// A waiter of a broken round leaves it; the last to leave a round being
    /// reset makes the barrier whole and wakes the arrivals waiting for it.
    /// A waiter that takes itself out of `roster` after its leave, and finds
    /// the round still draining, heals it if nobody alive is left.
    fn leave<W: Waiter, R: Roster>(word: &AtomicU32, waiter: &W, roster: &R, mut s: u32) {
        loop {
            let mut next = dec_count(s);
            if next & COUNT_MASK == 0 && next & RESETTING != 0 {
                next &= GEN_MASK;
            }
            match Self::transition(word, waiter, s, next) {
                Ok(()) => break,
                Err(now) => s = now,
            }
        }
        roster.leave();
        Self::heal(word, waiter, roster);
    }

    /// CAS from `s` to `next`; wakes all sleepers if that cleared
    /// [`SLEEPERS`]. `Err(now)` if the word was not `s`.
    #[inline]
    fn transition<W: Waiter>(word: &AtomicU32, waiter: &W, s: u32, next: u32) -> Result<(), u32> {
        // SYNC: Release pairs with the Acquire loads of the waiters this
        // transition releases, breaks or lets in (Steps 1 and 3 of `wait`);
        // Acquire pairs with the Release of the transitions before it.
        word.compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire)?;
        if s & SLEEPERS != 0 && next & SLEEPERS == 0 {
            waiter.wake(word, WAKE_ALL);
        }
        Ok(())
    }

    /// Announces a sleeper (sets [`SLEEPERS`]) and sleeps while the word is
    /// unchanged, for at most `timeout`; returns the word as it is after.
    fn sleep<W: Waiter>(
        word: &AtomicU32,
        waiter: &W,
        mut s: u32,
        timeout: Option<std::time::Duration>,
    ) -> u32 {
        if s & SLEEPERS == 0 {
            // SYNC: Acquire (on failure too) pairs with the Release CASes in
            // this file, for the value the caller then looks at.
            match word.compare_exchange(s, s | SLEEPERS, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => s |= SLEEPERS,
                Err(now) => return now,
            }
        }
        // Sleeps only while the word is exactly what we announced on: any
        // transition in between changed it, and the wait returns at once.
        waiter.wait(word, s, timeout);
        // SYNC: Acquire pairs with the Release CASes in this file.
        word.load(Ordering::Acquire)
    }
}

/// `s` with one waiter fewer (never borrowing into the flags, even if a peer
/// scribbled a zero count).
#[inline]
fn dec_count(s: u32) -> u32 {
    if s & COUNT_MASK == 0 { s } else { s - 1 }
}
