//! Event time: watermark generation at sources, watermark tracking across input channels, and
//! per-key timers.

mod strategy;
mod timers;
mod watermark;

pub use strategy::{SourceWatermarks, WatermarkGenerator, WatermarkStrategy, max_millis};
pub use timers::{TIMERS_TABLE, TimeDomain, Timer, TimerService};
pub use watermark::WatermarkTracker;
