//! Sink tables over Arrow Flight: any Flight client (pyarrow, ADBC's Flight SQL driver, DuckDB
//! through ADBC) reads the rows a job's `'connector' = 'flight'` sinks hold.

mod catalog;

pub use catalog::{PartitionLocation, ScanError, SinkTableCatalog, SinkTableInfo};
