//! What the sink-table Flight service serves: the [`SinkTableCatalog`] of sink tables a
//! process knows, and where each table's partitions are read.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

/// One sink table as the service lists it.
#[derive(Debug, Clone)]
pub struct SinkTableInfo {
    /// The table's name (the sink table's name in the job's SQL, or the DataStream sink's).
    pub name: String,
    /// Schema of the rows a reader gets (no `_row_kind` column: upsert tables are served as
    /// their current rows).
    pub schema: SchemaRef,
    /// The job that writes it, and that job's state (RUNNING, FINISHED, …).
    pub job_id: String,
    pub job_state: String,
    /// Primary key columns of an upsert table; empty for an append-only one.
    pub primary_key: Vec<String>,
    /// Rows visible now, over all partitions (`None` when unknown here, e.g. remote ones).
    pub rows: Option<u64>,
    /// Where its partitions are read: one endpoint per partition (a TaskManager's subtasks of
    /// the sink, in a cluster), or one for the whole table (local mode).
    pub partitions: Vec<PartitionLocation>,
}

/// Where one partition of a sink table is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLocation {
    /// The partition's id, handed back in the ticket (`None`: the whole table).
    pub partition: Option<u32>,
    /// `grpc://host:port` of the Flight server that holds it; `None`: the server answering.
    pub location: Option<String>,
}

/// Why a scan failed, with a message naming the table.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScanError {
    #[error("no sink table '{0}'")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
}

/// The sink tables a process serves. Implemented over the engine's sink-table registry (local
/// mode, a TaskManager) and over the cluster's view of it (the JobManager).
pub trait SinkTableCatalog: Send + Sync + 'static {
    /// Every table, of running and of finished jobs, in name order.
    fn tables(&self) -> Vec<SinkTableInfo>;

    /// The rows of `table` visible now (as of its latest completed checkpoint when its job
    /// checkpoints), of one partition or (`None`) of every partition this process holds.
    /// The batches share their buffers with the table; nothing is copied.
    fn scan(
        &self,
        table: &str,
        partition: Option<u32>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ScanError>;
}

impl<T: SinkTableCatalog + ?Sized> SinkTableCatalog for Arc<T> {
    fn tables(&self) -> Vec<SinkTableInfo> {
        (**self).tables()
    }

    fn scan(
        &self,
        table: &str,
        partition: Option<u32>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ScanError> {
        (**self).scan(table, partition)
    }
}
