//! The delivery queue: what one export stream still owes the agent.
//!
//! Items (spans, stats reports) wait in `pending` until the stream worker writes them, then in `in_flight`
//! until the stream they were written to ends cleanly: the agent answered our end-of-stream with an OK
//! status, so it read everything before it. The agents never acknowledge single messages (the reference
//! agent does not either), so a clean end is the only proof of delivery there is. A broken stream puts its
//! in-flight items back at the front of `pending`, in order, to be written again on the next stream; the
//! agent may then see some of them twice, never none.
//!
//! The queue is bounded in items, in flight included. A push beyond the bound drops the oldest pending
//! items and counts them; items in flight are not dropped, since they are probably delivered already (the
//! worker keeps them well below the bound, see `stream.rs`).
//!
//! Every item gets a sequence number when pushed. Items resolve (delivered or dropped) in sequence order,
//! so "everything pushed before a flush resolved" is one comparison with the oldest unresolved number.

use std::collections::VecDeque;

use crate::export::{SpanBatch, StatsReport};

/// A run of consecutive items that moves through the queue as one piece.
pub(super) trait Chunk: Clone {
    /// How many items it holds; never 0.
    fn len(&self) -> usize;

    /// The sequence number of its first item.
    fn seq(&self) -> u64;

    /// Splits off and returns the first `n` items (`0 < n < len`), keeping the rest. `None` when the chunk
    /// cannot be split; it then moves and drops as a whole.
    fn split_front(&mut self, n: usize) -> Option<Self>;
}

/// Spans `range` of one batch handed to the exporter: the batch is shared, never copied.
#[derive(Clone, Debug)]
pub(super) struct SpanChunk {
    pub(super) batch: SpanBatch,
    pub(super) range: std::ops::Range<usize>,
    pub(super) seq: u64,
}

impl SpanChunk {
    /// The spans of this chunk.
    pub(super) fn spans(&self) -> &[crate::trace::SpanData] {
        &self.batch[self.range.clone()]
    }
}

impl Chunk for SpanChunk {
    fn len(&self) -> usize {
        self.range.len()
    }

    fn seq(&self) -> u64 {
        self.seq
    }

    fn split_front(&mut self, n: usize) -> Option<Self> {
        let split = self.range.start + n;
        let front = SpanChunk { batch: self.batch.clone(), range: self.range.start..split, seq: self.seq };
        self.range.start = split;
        self.seq += n as u64;
        Some(front)
    }
}

/// One stats report: always sent whole.
#[derive(Clone, Debug)]
pub(super) struct ReportChunk {
    pub(super) report: StatsReport,
    pub(super) seq: u64,
}

impl Chunk for ReportChunk {
    fn len(&self) -> usize {
        1
    }

    fn seq(&self) -> u64 {
        self.seq
    }

    fn split_front(&mut self, _n: usize) -> Option<Self> {
        None
    }
}

/// The bounded queue of one stream; see the module docs.
#[derive(Debug)]
pub(super) struct DeliveryQueue<C> {
    capacity: usize,
    pending: VecDeque<C>,
    pending_len: usize,
    in_flight: Vec<C>,
    in_flight_len: usize,
    /// The sequence number the next pushed item gets: also the count of items ever pushed.
    next_seq: u64,
}

impl<C: Chunk> DeliveryQueue<C> {
    /// An empty queue holding at most `capacity` items (at least 1).
    pub(super) fn new(capacity: usize) -> Self {
        DeliveryQueue {
            capacity: capacity.max(1),
            pending: VecDeque::new(),
            pending_len: 0,
            in_flight: Vec::new(),
            in_flight_len: 0,
            next_seq: 0,
        }
    }

    /// The bound, in items.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends the chunk `make(seq)` builds for the next sequence number; it must hold `len` items (0 is a
    /// no-op). Returns how many items the bound made it drop, oldest first.
    pub(super) fn push(&mut self, len: usize, make: impl FnOnce(u64) -> C) -> usize {
        if len == 0 {
            return 0;
        }
        let chunk = make(self.next_seq);
        debug_assert_eq!(chunk.len(), len);
        self.next_seq += len as u64;
        self.pending.push_back(chunk);
        self.pending_len += len;
        let over = (self.pending_len + self.in_flight_len).saturating_sub(self.capacity);
        self.drop_pending_front(over)
    }

    /// Drops at least `n` items from the front of `pending` (more only when a chunk cannot be split), or
    /// all of `pending` if it holds fewer. Returns how many were dropped.
    fn drop_pending_front(&mut self, mut n: usize) -> usize {
        let mut dropped = 0;
        while n > 0 {
            let Some(front) = self.pending.front_mut() else { break };
            let len = front.len();
            if len > n
                && let Some(head) = front.split_front(n)
            {
                dropped += head.len();
                self.pending_len -= head.len();
                break;
            }
            self.pending.pop_front();
            self.pending_len -= len;
            dropped += len;
            n = n.saturating_sub(len);
        }
        dropped
    }

    /// Moves up to `max` items (at least one chunk, whole if it cannot be split) from the front of
    /// `pending` to `in_flight`, and returns them for writing.
    pub(super) fn take(&mut self, max: usize) -> Vec<C> {
        let mut taken = Vec::new();
        let mut budget = max.max(1);
        while budget > 0 {
            let Some(front) = self.pending.front_mut() else { break };
            let len = front.len();
            let chunk = if len > budget
                && let Some(head) = front.split_front(budget)
            {
                head
            } else if len > budget && !taken.is_empty() {
                // An unsplittable chunk over the budget waits for the next take.
                break;
            } else {
                match self.pending.pop_front() {
                    Some(chunk) => chunk,
                    None => break,
                }
            };
            let chunk_len = chunk.len();
            self.pending_len -= chunk_len;
            self.in_flight_len += chunk_len;
            budget = budget.saturating_sub(chunk_len);
            self.in_flight.push(chunk.clone());
            taken.push(chunk);
        }
        taken
    }

    /// The stream that carried `in_flight` ended cleanly: those items are delivered. Returns how many.
    pub(super) fn confirm(&mut self) -> usize {
        self.in_flight.clear();
        std::mem::take(&mut self.in_flight_len)
    }

    /// The stream that carried `in_flight` broke: those items go back to the front of `pending`, in order,
    /// to be written on the next stream. Returns how many.
    pub(super) fn requeue(&mut self) -> usize {
        for chunk in self.in_flight.drain(..).rev() {
            self.pending.push_front(chunk);
        }
        let moved = std::mem::take(&mut self.in_flight_len);
        self.pending_len += moved;
        moved
    }

    /// Items not yet written to any stream.
    pub(super) fn pending_len(&self) -> usize {
        self.pending_len
    }

    /// Items written to the current stream and not yet confirmed.
    pub(super) fn in_flight_len(&self) -> usize {
        self.in_flight_len
    }

    /// The sequence number of the oldest item neither delivered nor dropped; `pushed()` when there is none.
    pub(super) fn oldest_unresolved(&self) -> u64 {
        self.in_flight.first().or(self.pending.front()).map_or(self.next_seq, Chunk::seq)
    }

    /// How many items were ever pushed (the sequence number the next one gets).
    pub(super) fn pushed(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A chunk of plain numbered items, splittable.
    #[derive(Clone, Debug, PartialEq)]
    struct Run {
        seq: u64,
        len: usize,
    }

    impl Chunk for Run {
        fn len(&self) -> usize {
            self.len
        }
        fn seq(&self) -> u64 {
            self.seq
        }
        fn split_front(&mut self, n: usize) -> Option<Self> {
            let head = Run { seq: self.seq, len: n };
            self.seq += n as u64;
            self.len -= n;
            Some(head)
        }
    }

    fn push(queue: &mut DeliveryQueue<Run>, len: usize) -> usize {
        queue.push(len, |seq| Run { seq, len })
    }

    fn seqs(chunks: &[Run]) -> Vec<u64> {
        chunks.iter().flat_map(|c| c.seq..c.seq + c.len as u64).collect()
    }

    #[test]
    fn items_leave_only_when_confirmed() {
        let mut queue = DeliveryQueue::new(100);
        assert_eq!(push(&mut queue, 10), 0);
        assert_eq!(push(&mut queue, 5), 0);
        let taken = queue.take(12);
        assert_eq!(seqs(&taken), (0..12).collect::<Vec<_>>());
        assert_eq!((queue.pending_len(), queue.in_flight_len()), (3, 12));
        assert_eq!(queue.oldest_unresolved(), 0, "in flight is not delivered yet");
        assert_eq!(queue.confirm(), 12);
        assert_eq!(queue.oldest_unresolved(), 12);
        assert_eq!(seqs(&queue.take(100)), vec![12, 13, 14]);
        queue.confirm();
        assert_eq!(queue.oldest_unresolved(), 15);
        assert_eq!(queue.pushed(), 15);
    }

    #[test]
    fn a_broken_stream_requeues_in_order_before_newer_items() {
        let mut queue = DeliveryQueue::new(100);
        push(&mut queue, 4);
        let first = queue.take(3);
        push(&mut queue, 2);
        assert_eq!(queue.requeue(), 3);
        assert_eq!((queue.pending_len(), queue.in_flight_len()), (6, 0));
        assert_eq!(seqs(&queue.take(100)), (0..6).collect::<Vec<_>>());
        assert_eq!(seqs(&first), vec![0, 1, 2]);
    }

    #[test]
    fn the_bound_drops_the_oldest_pending_items_exactly() {
        let mut queue = DeliveryQueue::new(10);
        assert_eq!(push(&mut queue, 7), 0);
        assert_eq!(push(&mut queue, 7), 4, "14 items, bound 10");
        assert_eq!(queue.oldest_unresolved(), 4);
        assert_eq!(push(&mut queue, 25), 25 - 10 + 10, "a chunk over the bound keeps only its newest items");
        assert_eq!(queue.pending_len(), 10);
        assert_eq!(seqs(&queue.take(100)), (29..39).collect::<Vec<_>>());
    }

    #[test]
    fn items_in_flight_are_not_dropped() {
        let mut queue = DeliveryQueue::new(10);
        push(&mut queue, 6);
        queue.take(6);
        assert_eq!(push(&mut queue, 6), 2, "only pending items make room");
        assert_eq!((queue.pending_len(), queue.in_flight_len()), (4, 6));
        assert_eq!(queue.oldest_unresolved(), 0);
        queue.confirm();
        assert_eq!(queue.oldest_unresolved(), 8);
    }

    #[test]
    fn unsplittable_chunks_move_whole() {
        let report: StatsReport = Arc::from(Vec::new());
        let mut queue = DeliveryQueue::new(2);
        for _ in 0..3 {
            queue.push(1, |seq| ReportChunk { report: report.clone(), seq });
        }
        assert_eq!(queue.pending_len(), 2);
        assert_eq!(queue.oldest_unresolved(), 1);
        let taken = queue.take(1);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].seq, 1);
    }

    #[test]
    fn span_chunks_split_without_copying_the_batch() {
        let batch: SpanBatch = Arc::from(Vec::new());
        let mut chunk = SpanChunk { batch: batch.clone(), range: 2..10, seq: 100 };
        let head = chunk.split_front(3).expect("spans split");
        assert_eq!((head.range.clone(), head.seq), (2..5, 100));
        assert_eq!((chunk.range.clone(), chunk.seq), (5..10, 103));
        assert!(Arc::ptr_eq(&head.batch, &batch));
    }
}
