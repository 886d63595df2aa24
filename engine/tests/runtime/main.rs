//! Jobs on the local runtime: keyed aggregation against a row-at-a-time reference at several
//! parallelisms and batch sizes, failures, unions and the changelog shape.

mod aggregation;
mod checkpoint_failures;
mod checkpoints;
mod failures;
mod file_source_rescale;
mod incremental_checkpoints;
mod joins;
mod nexmark;
mod process;
mod readable_state;
mod rescale;
mod sources;
mod stages;
mod stateful_recovery;
mod topology;
mod watermarks;
mod windows;
mod wordcount;

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_engine::runtime::{LocalRuntime, RuntimeConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A runtime with `slots` slots and no core pinning (tests share the machine).
pub fn runtime(slots: usize) -> LocalRuntime {
    LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(slots)
            .with_pinning(false),
    )
}

pub fn key_value_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]))
}

/// Cuts `rows` into batches of `batch_size` rows.
pub fn key_value_batches(rows: &[(i64, Option<i64>)], batch_size: usize) -> Vec<RecordBatch> {
    rows.chunks(batch_size.max(1))
        .map(|chunk| {
            let keys: ArrayRef = Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.0)));
            let values: ArrayRef = Arc::new(chunk.iter().map(|r| r.1).collect::<Int64Array>());
            RecordBatch::try_new(key_value_schema(), vec![keys, values]).expect("valid batch")
        })
        .collect()
}
