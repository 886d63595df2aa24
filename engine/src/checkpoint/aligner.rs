//! Aligned checkpoints inside a task with several input channels.
//!
//! When the barrier of checkpoint n arrives on a channel, that channel is blocked (its later
//! elements belong after the snapshot) until every other live channel has delivered the same
//! barrier; then the task snapshots and forwards the barrier once, and all channels unblock.
//! A channel that ends counts as aligned. A barrier of a newer checkpoint abandons an older
//! alignment still in progress (the older checkpoint will time out at the coordinator).

use crate::element::CheckpointBarrier;

#[derive(Debug, Clone)]
pub struct BarrierAligner {
    blocked: Vec<bool>,
    ended: Vec<bool>,
    pending: Option<CheckpointBarrier>,
}

impl BarrierAligner {
    pub fn new(channels: usize) -> Self {
        BarrierAligner {
            blocked: vec![false; channels],
            ended: vec![false; channels],
            pending: None,
        }
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
            self.reset();
            barrier
        } else {
            None
        }
    }

    fn reset(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
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
