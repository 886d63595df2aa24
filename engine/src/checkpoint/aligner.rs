//! Aligned checkpoints inside a task with several input channels.
//!
//! When the barrier of checkpoint n arrives on a channel, that channel is blocked (its later
//! elements belong after the snapshot) until every other live channel has delivered the same
//! barrier; then the task snapshots and forwards the barrier once, and all channels unblock.
//! A channel that ends counts as aligned. A barrier of a newer checkpoint abandons an older
//! alignment still in progress (the older checkpoint will time out at the coordinator).

use std::time::{Duration, Instant};

use crate::element::CheckpointBarrier;

#[derive(Debug, Clone)]
pub struct BarrierAligner {
    blocked: Vec<bool>,
    ended: Vec<bool>,
    pending: Option<CheckpointBarrier>,
    /// When the first barrier of the pending alignment arrived.
    started: Option<Instant>,
    /// How long the last completed alignment took, first barrier to last.
    last_alignment: Duration,
}

impl BarrierAligner {
    pub fn new(channels: usize) -> Self {
        BarrierAligner {
            blocked: vec![false; channels],
            ended: vec![false; channels],
            pending: None,
            started: None,
            last_alignment: Duration::ZERO,
        }
    }

    /// How long the last completed alignment took, from its first barrier to its last.
    pub fn last_alignment(&self) -> Duration {
        self.last_alignment
    }

    /// Whether elements of `channel` must wait for the current alignment to finish.
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.blocked[channel]
    }

    /// A barrier arrived on `channel`; returns it once all live channels have delivered it.
    pub fn on_barrier(
        &mut self,
        channel: usize,
        barrier: CheckpointBarrier,
    ) -> Option<CheckpointBarrier> {
        match self.pending {
            Some(pending) if pending.id > barrier.id => return None,
            Some(pending) if pending.id < barrier.id => self.reset(),
            _ => {}
        }
        if self.pending.is_none() {
            self.started = Some(Instant::now());
        }
        self.pending = Some(barrier);
        self.blocked[channel] = true;
        self.try_complete()
    }

    /// `channel` ended; returns a pending barrier that this completes.
    pub fn on_end(&mut self, channel: usize) -> Option<CheckpointBarrier> {
        self.ended[channel] = true;
        self.blocked[channel] = false;
        self.pending?;
        self.try_complete()
    }

    fn try_complete(&mut self) -> Option<CheckpointBarrier> {
        let aligned = self
            .blocked
            .iter()
            .zip(&self.ended)
            .all(|(blocked, ended)| *blocked || *ended);
        if aligned {
            let barrier = self.pending.take();
            self.last_alignment = self.started.map_or(Duration::ZERO, |s| s.elapsed());
            self.reset();
            barrier
        } else {
            None
        }
    }

    fn reset(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.started = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::SnapshotKind;
    use crate::ids::CheckpointId;

    fn barrier(id: u64) -> CheckpointBarrier {
        CheckpointBarrier {
            id: CheckpointId(id),
            timestamp_ms: 0,
            kind: SnapshotKind::Checkpoint,
        }
    }

    #[test]
    fn blocks_until_all_channels_deliver() {
        let mut a = BarrierAligner::new(3);
        assert_eq!(a.on_barrier(0, barrier(1)), None);
        assert!(a.is_blocked(0));
        assert!(!a.is_blocked(1));
        assert_eq!(a.on_barrier(2, barrier(1)), None);
        assert_eq!(a.on_barrier(1, barrier(1)), Some(barrier(1)));
        assert!(!a.is_blocked(0) && !a.is_blocked(2));
    }

    #[test]
    fn an_alignment_is_timed_from_its_first_barrier_to_its_last() {
        let mut a = BarrierAligner::new(2);
        assert_eq!(a.last_alignment(), Duration::ZERO);
        assert_eq!(a.on_barrier(0, barrier(1)), None);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(a.on_barrier(1, barrier(1)), Some(barrier(1)));
        let first = a.last_alignment();
        assert!(first >= Duration::from_millis(20), "{first:?}");
        // The next alignment starts its own clock.
        assert_eq!(a.on_barrier(1, barrier(2)), None);
        assert_eq!(a.on_barrier(0, barrier(2)), Some(barrier(2)));
        assert!(a.last_alignment() < first);
    }

    #[test]
    fn ended_channel_counts_as_aligned() {
        let mut a = BarrierAligner::new(2);
        assert_eq!(a.on_barrier(0, barrier(4)), None);
        assert_eq!(a.on_end(1), Some(barrier(4)));
    }

    #[test]
    fn newer_barrier_abandons_older_alignment() {
        let mut a = BarrierAligner::new(2);
        a.on_barrier(0, barrier(1));
        assert_eq!(a.on_barrier(1, barrier(2)), None);
        assert!(!a.is_blocked(0));
        assert_eq!(a.on_barrier(0, barrier(2)), Some(barrier(2)));
    }
}
