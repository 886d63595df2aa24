//! # sluice-flight
//!
//! Arrow Flight for Sluice. Planned modules (later issues): `codec` (stream elements in Flight
//! messages: batches as IPC, watermarks/barriers/end-of-input in `app_metadata`), `exchange/`
//! (an implementation of the engine's `runtime::exchange::ExchangeFactory` for subtasks on
//! other TaskManagers, with credit-based flow control) and `sink_table/` (sink tables served to
//! any Flight client). Today the crate only fixes its place in the dependency order:
//! coordinator → flight → engine.

pub use sluice_engine::runtime::exchange::{ExchangeFactory, InputChannel, OutputChannel};
