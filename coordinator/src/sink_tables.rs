//! The sink tables a process serves over Arrow Flight: in local mode (`sluice sql -f FILE
//! --flight-port P`), the tables of the session's jobs, read from this process's memory.

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sluice_engine::connector::SinkTables;
use sluice_flight::sink_table::{PartitionLocation, ScanError, SinkTableCatalog, SinkTableInfo};

/// The sink tables of a local session, with the state of the job that writes them.
#[derive(Debug, Clone)]
pub struct LocalSinkCatalog {
    tables: SinkTables,
    job: Arc<Mutex<(String, String)>>,
}

impl LocalSinkCatalog {
    /// Serves `tables`; the job is "local", CREATED, until [`LocalSinkCatalog::set_job`].
    pub fn new(tables: SinkTables) -> Self {
        LocalSinkCatalog {
            tables,
            job: Arc::new(Mutex::new(("local".into(), "CREATED".into()))),
        }
    }

    /// The job writing the tables, and its state (RUNNING, FINISHED, FAILED, CANCELED).
    pub fn set_job(&self, id: &str, state: &str) {
        *self.job.lock().unwrap_or_else(|p| p.into_inner()) = (id.to_string(), state.to_string());
    }
}

impl SinkTableCatalog for LocalSinkCatalog {
    fn tables(&self) -> Vec<SinkTableInfo> {
        let (job_id, job_state) = self.job.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.tables
            .describe()
            .into_iter()
            .map(|table| SinkTableInfo {
                name: table.name,
                schema: table.schema,
                job_id: job_id.clone(),
                job_state: job_state.clone(),
                primary_key: table.primary_key,
                rows: Some(table.rows),
                // One endpoint, here, for the whole table.
                partitions: vec![PartitionLocation {
                    partition: None,
                    location: None,
                }],
            })
            .collect()
    }

    fn scan(
        &self,
        table: &str,
        partition: Option<u32>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ScanError> {
        match self.tables.scan(table, partition) {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(ScanError::NotFound(table.to_string())),
            Err(error) => Err(ScanError::Failed(format!("sink table '{table}': {error}"))),
        }
    }
}
