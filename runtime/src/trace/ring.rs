//! A bounded ring with one producer and any number of consumers, where a full ring drops its oldest entry
//! (or the new one, while a consumer is reading the oldest: the producer never waits for a consumer).
//!
//! Each thread that ends sampled spans owns one ([`Producer`]); the span pipeline's batcher consumes them
//! all. A push is plain stores: the entry's fields, its slot's stamp (release) and the tail (release); no
//! read-modify-write, and nothing read that another core wrote recently, except in the two cases below.
//!
//! The protocol is the one of crossbeam's `ArrayQueue`, specialised to one producer. Every slot has a
//! stamp: `position` when the slot is free for the entry at that position, `position + 1` once that entry
//! is written. Positions grow without wrapping (64 bits), so a stamp is never ambiguous.
//! - A consumer reads the head `h`, checks the slot's stamp is `h + 1` (written), and claims the entry with
//!   a compare-exchange of the head from `h` to `h + 1`; only the winner reads the slot, then sets its stamp
//!   to `h + capacity`, freeing it for the producer's next lap.
//! - The producer at position `t` writes only when the slot's stamp is `t` (freed by whoever read the entry
//!   a lap before). Otherwise the slot still holds the entry at `t - capacity`: if the head is still there,
//!   the ring is full, and the producer claims that oldest entry with the same compare-exchange on the head
//!   a consumer uses, so exactly one of them gets it (the producer drops it and counts it); if the head has
//!   moved past it, a consumer claimed it and is reading it (a few hundred nanoseconds): the producer
//!   spins a little for its stamp, and if the consumer is slower (preempted), drops the new entry instead
//!   of waiting, so that a request thread never waits for the batcher's thread to be scheduled.
//!
//! So a slot is only ever read or written by the one thread that owns it at the time: the producer between
//! a stamp of `t` and its store of `t + 1`, a consumer between its winning compare-exchange and its store
//! of the next lap's stamp. The release store of each hand-over and the acquire load that observes it order
//! the accesses.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// How many times a producer finding a consumer reading the slot it needs spins before dropping its new
/// entry instead (a `pause` takes up to about 140 cycles on recent Intel cores).
const MAX_SPINS: u32 = 16;

#[repr(C, align(64))]
struct Slot<T> {
    /// See the module docs.
    stamp: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// The shared part of a ring: what consumers use, and what outlives the producer.
pub(crate) struct Ring<T> {
    /// The oldest entry's position: where consumers read, and where a producer facing a full ring drops.
    /// On cache lines of its own, as the tail: consumers write the head and the producer the tail, so neither
    /// may share a line with the other or with the slots.
    head: CachePadded<AtomicU64>,
    /// The next position the producer writes. Only the producer writes it; consumers read it for the length.
    tail: CachePadded<AtomicU64>,
    slots: Box<[Slot<T>]>,
    /// `slots.len() - 1`; the length is a power of two.
    mask: u64,
}

// SAFETY: entries move from the producer's thread to a consumer's (so `T: Send`); the stamps and the head
// give each slot to one thread at a time (module docs), so sharing the ring is sound for `T: Send`.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Send> Sync for Ring<T> {}

/// The largest ring [`Ring::with_capacity`] makes (a larger request is cut to it): 2^20 slots, so that an
/// absurd configured bound gives a large ring rather than an allocation failure on a request thread.
pub(crate) const MAX_CAPACITY: usize = 1 << 20;

/// The one handle that pushes into a [`Ring`]. Not `Clone`: the protocol allows one producer.
pub(crate) struct Producer<T> {
    ring: Arc<Ring<T>>,
    /// The next position to write: the producer's own copy of the ring's tail.
    tail: u64,
}

/// What [`Producer::push_with`] did besides queueing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// There was room.
    Queued,
    /// The ring was full: the oldest entry was dropped to make room.
    DroppedOldest,
    /// The ring was full and a consumer was reading the oldest entry: the new one was dropped (`write` was
    /// not called).
    DroppedNewest,
}

impl<T> Ring<T> {
    /// A ring of `capacity` entries (1 to [`MAX_CAPACITY`]) rounded up to a power of two, and its
    /// producer. The slots are allocated here, uninitialised but for their stamps.
    pub(crate) fn with_capacity(capacity: usize) -> (Arc<Ring<T>>, Producer<T>) {
        let capacity = capacity.clamp(1, MAX_CAPACITY).next_power_of_two();
        let slots = (0..capacity as u64)
            .map(|position| Slot {
                stamp: AtomicU64::new(position),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        let ring = Arc::new(Ring {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
            slots,
            mask: capacity as u64 - 1,
        });
        (Arc::clone(&ring), Producer { ring, tail: 0 })
    }

    /// How many entries the ring holds at most.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The bytes a slot takes, entry and stamp.
    #[cfg(test)]
    pub(crate) const SLOT_SIZE: usize = std::mem::size_of::<Slot<T>>();

    /// How many entries are queued, as of a moment ago (entries may be pushed or popped meanwhile).
    pub(crate) fn len(&self) -> usize {
        // The head first: it never passes the tail, so reading the tail after it gives no negative length.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        usize::try_from(tail.saturating_sub(head)).unwrap_or(usize::MAX)
    }

    /// Whether nothing is queued, as of a moment ago.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, position: u64) -> &Slot<T> {
        // Masked, so always in bounds.
        &self.slots[(position & self.mask) as usize]
    }

    /// Takes the oldest entry out with `take`, which is given the entry's slot and must move the entry out
    /// of it (read it with `ptr::read` or equivalent, leaving it uninitialised). `None` when empty.
    ///
    /// `take` must not panic: the slot would be left claimed and the producer would wait for it forever.
    pub(crate) fn pop_with<R>(&self, take: impl FnOnce(*mut T) -> R) -> Option<R> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let slot = self.slot(head);
            // Acquire: pairs with the producer's release store of the stamp, so its writes are visible.
            if slot.stamp.load(Ordering::Acquire) != head + 1 {
                // Not written yet, unless the producer dropped that entry meanwhile and moved the head on.
                let now = self.head.load(Ordering::Acquire);
                if now == head {
                    return None;
                }
                head = now;
                continue;
            }
            match self.head.compare_exchange_weak(head, head + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // SAFETY: the stamp said the entry at `head` is written, and winning the compare-exchange
                    // made this thread its only reader (module docs): the producer does not touch the slot
                    // again until the stamp below, and no other consumer or dropping producer can claim
                    // `head` any more. `take` moves the entry out, leaving the slot uninitialised.
                    let taken = take(unsafe { (*slot.value.get()).as_mut_ptr() });
                    // Release: the producer's next write to the slot comes after this read.
                    slot.stamp.store(head + self.mask + 1, Ordering::Release);
                    return Some(taken);
                }
                Err(now) => head = now,
            }
        }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // Exclusive now: drop the entries still queued.
        let (head, tail) = (*self.head.get_mut(), *self.tail.get_mut());
        for position in head..tail {
            let slot = &mut self.slots[(position & self.mask) as usize];
            if *slot.stamp.get_mut() == position + 1 {
                // SAFETY: the stamp says the entry at `position` was written and not taken.
                unsafe { slot.value.get_mut().assume_init_drop() };
            }
        }
    }
}

impl<T> Producer<T> {
    /// Queues an entry written by `write`, which is given the slot (uninitialised) and must initialise it
    /// completely. A full ring drops its oldest entry first, or, if a consumer is reading that one and does
    /// not finish within a few spins, drops this one (`write` is then not called).
    ///
    /// `write` must not panic: the slot would count as written but hold garbage.
    #[inline]
    pub(crate) fn push_with(&mut self, write: impl FnOnce(*mut T)) -> Pushed {
        let ring = &*self.ring;
        let tail = self.tail;
        let slot = ring.slot(tail);
        let mut pushed = Pushed::Queued;
        // Acquire: pairs with the consumer's release store after reading the entry a lap before.
        if slot.stamp.load(Ordering::Acquire) != tail {
            pushed = self.make_room(tail);
            if pushed == Pushed::DroppedNewest {
                return pushed;
            }
        }
        // SAFETY: the slot is free for position `tail` (its stamp is `tail`, or `make_room` dropped the
        // entry it held): no consumer reads it until the stamp below says it is written, and this is the
        // only producer (`&mut self`).
        write(unsafe { (*slot.value.get()).as_mut_ptr() });
        // Release: a consumer that sees the stamp sees the entry.
        slot.stamp.store(tail + 1, Ordering::Release);
        self.tail = tail + 1;
        ring.tail.store(tail + 1, Ordering::Release);
        pushed
    }

    /// Frees the slot of position `tail`, which still holds the entry of the lap before: drops it if the ring
    /// is full, or gives the consumer reading it a few spins; [`Pushed::DroppedNewest`] if it is still busy.
    #[cold]
    fn make_room(&self, tail: u64) -> Pushed {
        let ring = &*self.ring;
        let slot = ring.slot(tail);
        let oldest = tail - (ring.mask + 1);
        let mut spins = 0u32;
        loop {
            if slot.stamp.load(Ordering::Acquire) == tail {
                // A consumer finished reading it.
                return Pushed::Queued;
            }
            if ring.head.load(Ordering::Acquire) == oldest {
                // Full. Claimed as a consumer would, so that exactly one of us takes the oldest entry.
                if ring.head.compare_exchange(oldest, oldest + 1, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    // SAFETY: this producer wrote the entry at `oldest` (its stamp still says so: no consumer
                    // claimed it, or the head would have moved), and the compare-exchange made this thread
                    // its only reader.
                    unsafe { (*slot.value.get()).assume_init_drop() };
                    return Pushed::DroppedOldest;
                }
                // A consumer claimed it first: wait for it to finish.
                continue;
            }
            // A consumer claimed the oldest entry and is reading it: a read takes a few hundred
            // nanoseconds, about what these spins take.
            if spins == MAX_SPINS {
                // The consumer was probably preempted mid-read.
                return Pushed::DroppedNewest;
            }
            spins += 1;
            std::hint::spin_loop();
        }
    }

    /// How many entries are queued, as of a moment ago: [`Ring::len`] of this producer's ring.
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn push(producer: &mut Producer<String>, value: String) -> Pushed {
        // SAFETY of the write: `ptr::write` initialises the slot completely.
        producer.push_with(|slot| unsafe { slot.write(value) })
    }

    fn pop(ring: &Ring<String>) -> Option<String> {
        // SAFETY of the read: moves the entry out, as `pop_with` requires.
        ring.pop_with(|slot| unsafe { slot.read() })
    }

    #[test]
    fn first_in_first_out_and_the_oldest_dropped_when_full() {
        let (ring, mut producer) = Ring::with_capacity(3);
        assert_eq!(ring.capacity(), 4, "rounded up to a power of two");
        assert_eq!(pop(&ring), None);
        for i in 0..4 {
            assert_eq!(push(&mut producer, i.to_string()), Pushed::Queued);
        }
        assert_eq!(ring.len(), 4);
        assert_eq!(push(&mut producer, "4".into()), Pushed::DroppedOldest);
        assert_eq!(push(&mut producer, "5".into()), Pushed::DroppedOldest);
        assert_eq!(ring.len(), 4);
        let popped: Vec<_> = std::iter::from_fn(|| pop(&ring)).collect();
        assert_eq!(popped, ["2", "3", "4", "5"]);
        assert!(ring.is_empty());
        // Laps on: the slots freed by the pops take new entries.
        for i in 6..10 {
            assert_eq!(push(&mut producer, i.to_string()), Pushed::Queued);
        }
        assert_eq!(pop(&ring).as_deref(), Some("6"));
    }

    #[test]
    fn a_push_while_the_oldest_is_being_read_drops_the_new_entry_without_waiting() {
        let (ring, mut producer) = Ring::with_capacity(2);
        push(&mut producer, "a".into());
        push(&mut producer, "b".into());
        // Inside `take` the consumer holds the oldest slot, the one the next push needs.
        let taken = ring.pop_with(|slot| {
            let mut written = false;
            let pushed = producer.push_with(|_| written = true);
            assert_eq!(pushed, Pushed::DroppedNewest);
            assert!(!written, "the new entry is not written");
            // SAFETY: moves the entry out, as `pop_with` requires.
            unsafe { slot.read() }
        });
        assert_eq!(taken.as_deref(), Some("a"));
        assert_eq!(push(&mut producer, "c".into()), Pushed::Queued, "the slot read is free again");
        assert_eq!(std::iter::from_fn(|| pop(&ring)).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn entries_left_in_a_dropped_ring_are_dropped_once() {
        let marker = Arc::new(());
        let (ring, mut producer) = Ring::<Arc<()>>::with_capacity(4);
        for _ in 0..6 {
            producer.push_with(|slot| unsafe { slot.write(Arc::clone(&marker)) });
        }
        assert_eq!(Arc::strong_count(&marker), 5, "4 queued, 2 dropped as oldest: 4 + ours");
        let taken = ring.pop_with(|slot| unsafe { slot.read() });
        drop((taken, producer, ring));
        assert_eq!(Arc::strong_count(&marker), 1, "every entry dropped exactly once");
    }

    /// Producers racing a consumer and each other's drops: every entry is either consumed or dropped, exactly
    /// once, in order per producer, and no entry is torn (each is a `Box` whose contents are checked).
    #[test]
    fn stress_every_entry_is_consumed_or_dropped_exactly_once() {
        const PRODUCERS: usize = 6;
        const PER_PRODUCER: u64 = 200_000;
        let rings: Vec<_> = (0..PRODUCERS).map(|_| Ring::<Box<(u64, u64)>>::with_capacity(16)).collect();
        let shared: Vec<_> = rings.iter().map(|(ring, _)| Arc::clone(ring)).collect();
        let dropped = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = rings
            .into_iter()
            .enumerate()
            .map(|(id, (_, mut producer))| {
                let (dropped, done) = (Arc::clone(&dropped), Arc::clone(&done));
                std::thread::spawn(move || {
                    for i in 0..PER_PRODUCER {
                        let entry = Box::new((i, i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ id as u64));
                        if producer.push_with(|slot| unsafe { slot.write(entry) }) != Pushed::Queued {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Release);
                })
            })
            .collect();
        // Two consumers, as a flush on one thread while the batcher runs would be.
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (shared, done) = (shared.clone(), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut consumed = vec![Vec::new(); PRODUCERS];
                    loop {
                        let finished = done.load(Ordering::Acquire) == PRODUCERS;
                        let mut any = false;
                        for (id, ring) in shared.iter().enumerate() {
                            while let Some(entry) = ring.pop_with(|slot| unsafe { slot.read() }) {
                                assert_eq!(entry.1, entry.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ id as u64);
                                consumed[id].push(entry.0);
                                any = true;
                            }
                        }
                        if finished && !any {
                            return consumed;
                        }
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.join().expect("a producer panicked");
        }
        let mut consumed = vec![Vec::new(); PRODUCERS];
        for consumer in consumers {
            for (id, entries) in consumer.join().expect("a consumer panicked").into_iter().enumerate() {
                consumed[id].extend(entries);
            }
        }
        let mut total = 0;
        for entries in &mut consumed {
            let unsorted = entries.clone();
            entries.sort_unstable();
            entries.dedup();
            assert_eq!(entries.len(), unsorted.len(), "an entry was consumed twice");
            total += entries.len();
        }
        assert_eq!(
            total + dropped.load(Ordering::Relaxed),
            PRODUCERS * PER_PRODUCER as usize,
            "every entry consumed or counted as dropped"
        );
        // One consumer alone sees each producer's entries in order.
        let (ring, mut producer) = Ring::<Box<(u64, u64)>>::with_capacity(8);
        for i in 0..20u64 {
            producer.push_with(|slot| unsafe { slot.write(Box::new((i, 0))) });
        }
        let order: Vec<_> = std::iter::from_fn(|| ring.pop_with(|slot| unsafe { slot.read() }.0)).collect();
        assert_eq!(order, (12..20).collect::<Vec<_>>());
    }
}
