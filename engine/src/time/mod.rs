//! Event time: watermark tracking across input channels.

mod watermark;

pub use watermark::WatermarkTracker;
