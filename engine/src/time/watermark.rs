//! The combined watermark of a task with several input channels.
//!
//! A task's watermark is the minimum over its input channels' watermarks; a channel that has
//! ended, or that is idle (no element for the idle timeout, Flink's
//! `table.exec.source.idle-timeout`), no longer holds it back. An idle channel is included
//! again as soon as it delivers an element. The combined watermark only moves forward: a
//! channel whose watermark goes backwards is ignored for that element.

use crate::element::Watermark;

#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    channels: Vec<Watermark>,
    /// Ended or idle: excluded from the minimum.
    excluded: Vec<bool>,
    ended: Vec<bool>,
    combined: Watermark,
}

impl WatermarkTracker {
    pub fn new(channels: usize) -> Self {
        WatermarkTracker {
            channels: vec![Watermark::MIN; channels],
            excluded: vec![false; channels],
            ended: vec![false; channels],
            combined: Watermark::MIN,
        }
    }

    /// The current combined watermark.
    pub fn current(&self) -> Watermark {
        self.combined
    }

    /// Records a watermark from `channel`; returns the new combined watermark if it advanced.
    pub fn update(&mut self, channel: usize, watermark: Watermark) -> Option<Watermark> {
        if watermark > self.channels[channel] {
            self.channels[channel] = watermark;
        }
        self.recompute()
    }

    /// `channel` ended; returns the new combined watermark if excluding it advanced it.
    pub fn end(&mut self, channel: usize) -> Option<Watermark> {
        self.ended[channel] = true;
        self.excluded[channel] = true;
        self.recompute()
    }

    /// Marks `channel` idle (excluded) or active again; returns the new combined watermark if
    /// that advanced it.
    pub fn set_idle(&mut self, channel: usize, idle: bool) -> Option<Watermark> {
        if self.ended[channel] {
            return None;
        }
        self.excluded[channel] = idle;
        self.recompute()
    }

    pub fn is_idle(&self, channel: usize) -> bool {
        self.excluded[channel] && !self.ended[channel]
    }

    fn recompute(&mut self) -> Option<Watermark> {
        let min = self
            .channels
            .iter()
            .zip(&self.excluded)
            .filter(|(_, excluded)| !**excluded)
            .map(|(w, _)| *w)
            .min()?;
        if min > self.combined {
            self.combined = min;
            Some(min)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_channels_and_never_backwards() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.update(0, Watermark(10)), None);
        assert_eq!(t.update(1, Watermark(5)), Some(Watermark(5)));
        assert_eq!(t.update(1, Watermark(3)), None);
        assert_eq!(t.update(1, Watermark(20)), Some(Watermark(10)));
        assert_eq!(t.update(0, Watermark(8)), None);
        assert_eq!(t.current(), Watermark(10));
    }

    #[test]
    fn ended_channel_no_longer_holds_back() {
        let mut t = WatermarkTracker::new(2);
        t.update(0, Watermark(100));
        assert_eq!(t.end(1), Some(Watermark(100)));
        assert_eq!(t.end(0), None);
    }

    #[test]
    fn idle_channel_is_excluded_until_it_produces_again() {
        let mut t = WatermarkTracker::new(2);
        t.update(0, Watermark(50));
        assert_eq!(t.set_idle(1, true), Some(Watermark(50)));
        assert!(t.is_idle(1));
        // Back with an older watermark: included again, but the combined one stays.
        assert_eq!(t.set_idle(1, false), None);
        assert_eq!(t.update(1, Watermark(10)), None);
        assert_eq!(t.update(0, Watermark(60)), None);
        assert_eq!(t.update(1, Watermark(70)), Some(Watermark(60)));
    }
}
