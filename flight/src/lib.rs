//! # sluice-flight
//!
//! Arrow Flight for Sluice:
//! - [`codec`]: stream elements in Flight messages (batches as Arrow IPC, watermarks, barriers
//!   and end-of-input in `app_metadata`, optional LZ4/ZSTD compression);
//! - [`exchange`]: [`FlightExchange`], the engine's `ExchangeFactory` for a cluster: channels
//!   between subtasks of different TaskManagers are Flight streams with credit-based flow
//!   control, channels inside one TaskManager stay in-process queues;
//! - [`sink_table`]: the Flight (and Flight SQL) service that serves sink tables;
//! - [`ticket`]: the names of channels on the wire.
//!
//! Dependency order: coordinator → flight → engine.

pub mod codec;
mod error;
pub mod exchange;
pub mod sink_table;
pub mod ticket;

pub use error::{Error, Result};
pub use exchange::{
    ExchangeConfig, ExchangeMetrics, ExchangePlacement, ExchangeServer, FlightExchange,
};
pub use sluice_engine::runtime::exchange::{ExchangeFactory, InputChannel, OutputChannel};
pub use ticket::{ChannelTicket, TaskManagerId};
