//! [`Cursor`]: an end's own position and how far the other end lets it go,
//! kept in the end's handle.

/// An end's own position, kept in its handle as the position of slot 0 in
/// the current lap plus a slot index, so that a single-item step writes one
/// word (the index) and never divides; plus the limit the other side's
/// position allows, so that the hot path compares one word.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    /// Position of slot 0 in the current lap (a multiple of the capacity
    /// past the position the handle started from, less its slot index).
    base: u64,
    /// Slot index of the position, `< cap`.
    pub(super) idx: usize,
    /// The first position this end may not pass: for the producer, the
    /// consumer's `head` (when last read) plus the capacity; for the
    /// consumer, the producer's `tail` (when last read). Never below the
    /// position; at most the capacity above it.
    pub(super) limit: u64,
}

impl Cursor {
    /// A cursor at `pos` with nothing known to be available.
    pub(super) fn at(pos: u64, cap: usize) -> Cursor {
        let idx = (pos % cap as u64) as usize;
        Cursor {
            base: pos - idx as u64,
            idx,
            limit: pos,
        }
    }

    /// The position.
    #[inline]
    pub(super) fn pos(&self) -> u64 {
        self.base.wrapping_add(self.idx as u64)
    }

    /// Slots (or items) this end may move now, as far as it knows.
    #[inline]
    pub(super) fn available(&self) -> usize {
        // At most the capacity (see `limit`), so it fits.
        self.limit.wrapping_sub(self.pos()) as usize
    }

    /// Sets the limit to `limit` if it lies within `cap` above the position,
    /// else (a scribbled index) to the position: nothing available.
    #[inline]
    pub(super) fn set_limit(&mut self, limit: u64, cap: usize) -> usize {
        let pos = self.pos();
        self.limit = if limit.wrapping_sub(pos) <= cap as u64 {
            limit
        } else {
            pos
        };
        self.available()
    }

    /// Moves on by one slot.
    #[inline]
    fn step(&mut self, cap: usize) {
        self.idx += 1;
        if self.idx == cap {
            self.idx = 0;
            self.base = self.base.wrapping_add(cap as u64);
        }
    }

    /// Moves on by `n <= cap` slots, the single step without the
    /// arithmetic of a batch.
    #[inline]
    pub(super) fn move_on(&mut self, n: usize, cap: usize) {
        if n == 1 {
            self.step(cap);
        } else {
            self.advance(n, cap);
        }
    }

    /// Moves on by `n <= cap` slots.
    #[inline]
    fn advance(&mut self, n: usize, cap: usize) {
        // idx < cap and n <= cap, so the sum is below 2 * cap, which fits:
        // capacity is bounded by the layout (a slot is at least a byte, or
        // the typed layer's own limit).
        self.idx += n;
        if self.idx >= cap {
            self.idx -= cap;
            self.base = self.base.wrapping_add(cap as u64);
        }
    }
}
