//! The slot format of the message rings and their memory: slots of one
//! size fixed at creation (stamp, length, message bytes), the layout and
//! fingerprint of a message object, and `MsgMem`, the ring's view of a
//! mapping.

use std::fmt;
use std::ptr;

use crate::algo::holders::{HOLDER_TABLE_BYTES, HolderTable, SETTLE_MS};
use crate::algo::mpmc::{MpmcState, QueueMemory, RawQueue, STATE_BYTES};
use crate::algo::robust::{Liveness, Owner};
use crate::error::{Error, Result};
use crate::loom::atomic::{AtomicU64, Ordering};
use crate::shm::header::{Expect, Fingerprint, ObjectKind, ObjectLayout};
use crate::shm::object::{Place, Placed};
use crate::sys::clock::coarse_ms;
use crate::sys::futex::Futex;
use crate::sys::thread::ProcLiveness;

/// Alignment (and size granule) of a message slot.
const SLOT_ALIGN: usize = 64;
/// Bytes of a slot before the message: stamp, length, padding.
const SLOT_HEADER: usize = 16;
/// The largest maximum message size objects accept (1 GiB).
pub(crate) const MAX_MESSAGE_SIZE: usize = 1 << 30;
/// The largest number of slots a message object accepts.
pub(crate) const MAX_MESSAGES: usize = crate::shm::header::MAX_RING_SLOTS;
/// Prefix of the type hash of message slots.
const TAG: &str = "multiproc::message::";

/// The slot size for messages of up to `max_message_size` bytes.
fn slot_size(max_message_size: usize) -> Result<usize> {
    if max_message_size == 0 || max_message_size > MAX_MESSAGE_SIZE {
        return Err(Error::InvalidSize {
            requested: max_message_size as u64,
            reason: "maximum message size must be 1 ..= 2^30 bytes",
        });
    }
    Ok((max_message_size + SLOT_HEADER).next_multiple_of(SLOT_ALIGN))
}

/// The layout of a message object of `kind` with `slots` slots for
/// messages of `max_message_size` bytes of `T`.
pub(crate) fn layout<T>(
    kind: ObjectKind,
    slots: usize,
    max_message_size: usize,
) -> Result<ObjectLayout> {
    if slots > 2 * MAX_MESSAGES {
        return Err(Error::InvalidSize {
            requested: slots as u64,
            reason: "capacity above MessageQueue::MAX_CAPACITY",
        });
    }
    let slot = slot_size(max_message_size)?;
    // slot <= 2^30 + 64 fits u32.
    let fp = Fingerprint::slots::<T>(TAG, slot as u32, SLOT_ALIGN as u32);
    ObjectLayout::with_fingerprint(kind, fp, slots)
}

/// What an attacher of a message object of `T` accepts: slots of any size
/// (a multiple of 64) whose type hash names `T`.
pub(crate) fn expect<T>() -> Expect {
    Expect::Slots {
        type_hash: Fingerprint::slot_hash::<T>(TAG),
        align: SLOT_ALIGN as u32,
        min_size: SLOT_ALIGN as u32,
    }
}

/// Capacity argument check shared by the constructors.
pub(crate) fn check_capacity(capacity: usize) -> Result<()> {
    if capacity == 0 || capacity > MAX_MESSAGES {
        return Err(Error::InvalidSize {
            requested: capacity as u64,
            reason: "capacity must be 1 ..= 2^32 - 1 messages",
        });
    }
    Ok(())
}

/// One ring of message slots inside a placed object: its state lies
/// `state_back` bytes before element 0, its slots are elements
/// `first .. first + cap`.
#[derive(Clone)]
pub(crate) struct MsgMem {
    obj: Placed,
    state_back: usize,
    first: usize,
    cap: usize,
    slot: usize,
    /// For a pipe's ring: how far before element 0 the holder tables of
    /// its producers' end and of its consumers' end lie.
    peers: Option<(usize, usize)>,
}

impl fmt::Debug for MsgMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.obj.fmt(f)
    }
}

impl MsgMem {
    /// The ring whose state lies `state_back` bytes before element 0 of
    /// `obj` and whose slots are elements `first .. first + cap`.
    ///
    /// Callers pass constants of the object's kind, checked here against
    /// its validated layout (a failure is a bug in this crate, not bad
    /// shared memory: the layout was computed locally).
    pub(crate) fn new(obj: Placed, state_back: usize, first: usize, cap: usize) -> MsgMem {
        let slot = obj.fingerprint().size as usize;
        assert!(
            cap >= 1
                && first + cap <= obj.len()
                && slot >= SLOT_ALIGN
                && slot.is_multiple_of(SLOT_ALIGN)
                && state_back >= STATE_BYTES
                && state_back.is_multiple_of(SLOT_ALIGN),
            "message ring outside its object"
        );
        MsgMem {
            obj,
            state_back,
            first,
            cap,
            slot,
            peers: None,
        }
    }

    /// The ring of a pipe: the holder tables of the end that puts into it
    /// and of the end that takes from it lie `producers_back` and
    /// `consumers_back` bytes before element 0, before the ring states.
    /// Blocked callers ask them whether the other side is gone.
    pub(crate) fn with_peers(mut self, producers_back: usize, consumers_back: usize) -> MsgMem {
        for back in [producers_back, consumers_back] {
            assert!(
                back >= self.state_back + HOLDER_TABLE_BYTES && back.is_multiple_of(SLOT_ALIGN),
                "holder table outside its object"
            );
        }
        self.peers = Some((producers_back, consumers_back));
        self
    }

    /// The holder table `back` bytes before element 0.
    fn holders(&self, back: usize) -> &HolderTable {
        // SAFETY: `with_peers` callers (the pipe) pass offsets that their
        // kind's data offset reserves after the header, 64-aligned, each
        // HOLDER_TABLE_BYTES long and clear of the ring states (checked
        // there); a HolderTable is only atomics (valid for any bytes); the
        // mapping outlives `&self`.
        unsafe { &*self.obj.data().sub(back).cast::<HolderTable>() }
    }

    /// The holder tables of the producers' and the consumers' ends, for a
    /// pipe's ring.
    pub(crate) fn peer_tables(&self) -> Option<(&HolderTable, &HolderTable)> {
        self.peers.map(|(p, c)| (self.holders(p), self.holders(c)))
    }

    /// The object the ring lives in.
    pub(crate) fn placed(&self) -> &Placed {
        &self.obj
    }

    /// Largest message a slot holds.
    #[inline]
    pub(crate) fn max_message_size(&self) -> usize {
        self.slot - SLOT_HEADER
    }

    /// Start of slot `index` (below the capacity).
    #[inline]
    fn slot_ptr(&self, index: usize) -> *mut u8 {
        // One compare keeps every slot access in bounds whoever calls.
        assert!(index < self.cap, "message slot index out of range");
        // SAFETY: first + index < first + cap <= the object's length
        // (checked in `new` and above), so the slot lies inside the object.
        unsafe { self.obj.data().add((self.first + index) * self.slot) }
    }
}

// SAFETY: the state offset and slot bounds were checked in `new` against
// the locally validated layout, which lies inside the mapping that `obj`
// keeps alive; the state is only atomics (valid for any bytes), stamps are
// 64-aligned u64s only ever accessed atomically; the capacity is constant
// and below 2^60 (an object is at most isize::MAX / 2 bytes).
unsafe impl QueueMemory for MsgMem {
    type Waiter = Futex;

    #[inline]
    fn state(&self) -> &MpmcState {
        // SAFETY: `state_back` >= STATE_BYTES bytes before element 0 lie
        // after the header in the object (each message kind's data offset
        // reserves them), 64-aligned; MpmcState is only atomics.
        unsafe { &*self.obj.data().sub(self.state_back).cast::<MpmcState>() }
    }

    #[inline]
    fn capacity(&self) -> usize {
        self.cap
    }

    #[inline]
    fn waiter(&self) -> &Futex {
        &Futex
    }

    #[inline]
    unsafe fn stamp(&self, index: usize) -> &AtomicU64 {
        // SAFETY: index < capacity (caller): the slot's first 8 bytes, 64-aligned.
        unsafe { AtomicU64::from_ptr(self.slot_ptr(index).cast::<u64>()) }
    }
    #[inline]
    fn me(&self) -> Owner {
        crate::sys::thread::current()
    }

    fn is_dead(&self, owner: Owner) -> bool {
        ProcLiveness.is_dead(owner)
    }

    fn producers_gone(&self) -> bool {
        self.peer_tables()
            .is_some_and(|(p, _)| p.gone_for(&ProcLiveness, coarse_ms(), SETTLE_MS))
    }

    fn consumers_gone(&self) -> bool {
        self.peer_tables()
            .is_some_and(|(_, c)| c.gone_for(&ProcLiveness, coarse_ms(), SETTLE_MS))
    }
}

/// The ring of a message object.
pub(crate) type Ring = RawQueue<MsgMem>;

/// Writes `bytes` (at most the slot's room) into slot `index`.
pub(super) fn write_slot(m: &MsgMem, index: usize, bytes: &[u8]) {
    debug_assert!(bytes.len() <= m.max_message_size());
    let p = m.slot_ptr(index);
    // SAFETY: the ring passes an index below the capacity whose slot it
    // owns; `bytes` fits after the 16-byte slot header (checked by the
    // caller before claiming). Volatile / plain copies of plain bytes.
    unsafe {
        ptr::write_volatile(p.add(8).cast::<u32>(), bytes.len() as u32);
        ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(SLOT_HEADER), bytes.len());
    }
}

/// Copies the message of slot `index` into `v` (replacing what it held);
/// `Err(len)` if its length word is larger than the slot (a peer scribbled
/// over it).
pub(super) fn read_slot(m: &MsgMem, index: usize, v: &mut Vec<u8>) -> std::result::Result<(), usize> {
    let p = m.slot_ptr(index);
    // SAFETY: the ring passes an index below the capacity whose slot it
    // owns; the length word is in the slot header.
    let len = unsafe { ptr::read_volatile(p.add(8).cast::<u32>()) } as usize;
    if len > m.max_message_size() {
        return Err(len);
    }
    v.clear();
    v.reserve(len);
    // SAFETY: len bytes after the slot header lie in the slot (checked
    // above); `v` has room for them; u8 has no invalid values.
    unsafe {
        ptr::copy_nonoverlapping(p.add(SLOT_HEADER), v.as_mut_ptr(), len);
        v.set_len(len);
    }
    Ok(())
}

/// Places a one-ring message object of `kind` (`Messages` or `Joinable`)
/// with `capacity` slots for messages of `max_message_size` bytes of `T`.
pub(crate) fn place_one_ring<T>(
    place: Place<'_>,
    kind: ObjectKind,
    capacity: usize,
    max_message_size: usize,
) -> Result<Ring> {
    check_capacity(capacity)?;
    let l = layout::<T>(kind, capacity, max_message_size)?;
    let slot = l.fingerprint.size as usize;
    let obj = place.make(l, |data| init_stamps(data, slot, 0, capacity))?;
    Ok(one_ring(obj))
}

/// Bytes a one-ring message object of `kind` takes (`usize::MAX` if the
/// sizes are refused).
pub(crate) fn one_ring_size<T>(
    kind: ObjectKind,
    capacity: usize,
    max_message_size: usize,
) -> usize {
    if check_capacity(capacity).is_err() {
        return usize::MAX;
    }
    layout::<T>(kind, capacity, max_message_size).map_or(usize::MAX, |l| l.total_size)
}

/// Makes the ring of a one-ring message object (kinds `Messages` and
/// `Joinable`: the ring's state right before element 0).
pub(crate) fn one_ring(obj: Placed) -> Ring {
    let cap = obj.len();
    RawQueue::new(MsgMem::new(obj, STATE_BYTES, 0, cap))
}

/// Writes the initial stamps of a ring whose slots are elements
/// `first .. first + cap` of the fresh object at `data` with `slot`-byte
/// slots.
pub(crate) fn init_stamps(data: *mut u8, slot: usize, first: usize, cap: usize) {
    for i in 0..cap {
        // SAFETY: the caller's object has at least first + cap slots of
        // `slot` bytes at `data`, 64-aligned, not yet published to anyone.
        // Relaxed: publishing the object (Release) orders it.
        unsafe { AtomicU64::from_ptr(data.add((first + i) * slot).cast::<u64>()) }
            .store(i as u64, Ordering::Relaxed);
    }
}
