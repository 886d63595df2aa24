//! Event time: watermark generation at sources and watermark tracking across input channels.

mod strategy;
mod watermark;

pub use strategy::{WatermarkGenerator, WatermarkStrategy, max_millis};
pub use watermark::WatermarkTracker;
