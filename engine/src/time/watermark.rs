//! The combined watermark of a task with several input channels.
//!
//! A task's watermark is the minimum over its input channels' watermarks; a channel that has
//! ended no longer holds it back. The combined watermark only moves forward: a channel whose
//! watermark goes backwards is ignored for that element.

use crate::element::Watermark;

#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    channels: Vec<Watermark>,
    ended: Vec<bool>,
    combined: Watermark,
}

impl WatermarkTracker {
    pub fn new(channels: usize) -> Self {
        WatermarkTracker {
            channels: vec![Watermark::MIN; channels],
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
        self.recompute()
    }

    fn recompute(&mut self) -> Option<Watermark> {
        let min = self
            .channels
            .iter()
            .zip(&self.ended)
            .filter(|(_, ended)| !**ended)
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
}
