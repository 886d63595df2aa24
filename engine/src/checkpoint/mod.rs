//! Checkpoint barriers inside a task: alignment across input channels.

mod aligner;

pub use aligner::BarrierAligner;
