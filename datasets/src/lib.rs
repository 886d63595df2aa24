//! Seeded, deterministic data generators that produce Arrow record batches.
//!
//! Sluice's sources and benchmarks read their input from here:
//!
//! - [`nexmark`]: the Nexmark auction benchmark (`person`, `auction`, `bid`),
//!   split-able over parallel source subtasks with identical output.
//! - [`datagen`]: Flink's `datagen` connector for an arbitrary Arrow schema,
//!   configured from SQL `WITH` options.
//! - [`tpch`]: the eight TPC-H tables (via `tpchgen-arrow`), as batches or
//!   Parquet files.
//!
//! Every generated value is a pure function of a seed and its position (event
//! number or row index), computed with [`random`]'s portable PRNG, so output
//! is identical across runs, platforms, batch sizes and parallelism. Columns
//! are filled in tight loops over `Vec`s and handed to Arrow without copying.

mod column;
pub mod datagen;
mod error;
pub mod nexmark;
pub mod random;
pub mod tpch;

pub use error::{Error, Result};
