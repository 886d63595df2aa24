//! # sluice-engine
//!
//! The engine of Sluice: everything a TaskManager runs, and everything a client needs to build a
//! job. Data flows as Arrow record batches from sources through chains of vectorized operators
//! to sinks; between chains, a partitioner splits each batch by key group and an exchange moves
//! the pieces (bounded in-process queues here, Arrow Flight streams in `sluice-flight`).
//!
//! Module map:
//! - [`element`] — the four kinds of stream element.
//! - [`ids`] — identifier newtypes.
//! - [`graph`] — the JobGraph (vertices, edges, partitioning) and its validation.
//! - [`expr`] — vectorized expressions with SQL null semantics.
//! - [`operator`] — the batch-level operator trait and the built-in operators.
//! - [`connector`] — sources and sinks (datagen, nexmark, filesystem, print, blackhole, collect).
//! - [`state`] — key groups and keyed state.
//! - [`time`] — watermarks.
//! - [`checkpoint`] — barrier alignment.
//! - [`runtime`] — the ExecutionGraph, slot threads, chains and the exchange.
//! - [`api`] — the DataStream API.
//! - [`sql`] — the Flink SQL front end: parse a script, plan queries onto the DataStream API.
//! - [`error`] — the error type.

pub mod alloc;
pub mod api;
pub mod checkpoint;
pub mod connector;
pub mod element;
pub mod error;
pub mod expr;
pub mod graph;
pub mod ids;
pub mod operator;
pub mod runtime;
pub mod spill;
pub mod sql;
pub mod state;
pub mod time;

pub use error::{Error, Result};
