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

/// The sink tables of the job slices a TaskManager runs (and ran: a finished job's tables stay
/// readable), one partition per sink subtask here.
#[derive(Debug, Clone, Default)]
pub struct TaskManagerSinkCatalog {
    jobs: Arc<Mutex<std::collections::BTreeMap<String, (SinkTables, String)>>>,
}

impl TaskManagerSinkCatalog {
    /// The tables of job `id` (the same registry for every attempt of the job here, so a
    /// restarted attempt recovers what the previous one staged).
    pub fn tables_of(&self, id: &str) -> SinkTables {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let entry = jobs
            .entry(id.to_string())
            .or_insert_with(|| (SinkTables::new(), "RUNNING".into()));
        entry.1 = "RUNNING".into();
        entry.0.clone()
    }

    /// Job `id`'s slice here ended in `state`.
    pub fn set_state(&self, id: &str, state: &str) {
        if let Some(entry) = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            entry.1 = state.to_string();
        }
    }

    fn jobs(&self) -> Vec<(String, SinkTables, String)> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, (tables, state))| (id.clone(), tables.clone(), state.clone()))
            .collect()
    }
}

impl SinkTableCatalog for TaskManagerSinkCatalog {
    fn tables(&self) -> Vec<SinkTableInfo> {
        let mut tables = Vec::new();
        for (job_id, registry, state) in self.jobs() {
            for table in registry.describe() {
                tables.push(SinkTableInfo {
                    partitions: table
                        .partitions
                        .iter()
                        .map(|&p| PartitionLocation {
                            partition: Some(p),
                            location: None,
                        })
                        .collect(),
                    name: table.name,
                    schema: table.schema,
                    job_id: job_id.clone(),
                    job_state: state.clone(),
                    primary_key: table.primary_key,
                    rows: Some(table.rows),
                });
            }
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables
    }

    fn scan(
        &self,
        table: &str,
        partition: Option<u32>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ScanError> {
        // The newest job holding the table (and partition) wins.
        for (_, registry, _) in self.jobs().into_iter().rev() {
            match registry.scan(table, partition) {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => continue,
                Err(error) => {
                    return Err(ScanError::Failed(format!("sink table '{table}': {error}")));
                }
            }
        }
        Err(ScanError::NotFound(table.to_string()))
    }
}

/// The JobManager's view of every job's sink tables: for each `'connector' = 'flight'` sink of
/// a job, one partition per subtask, read from the Flight service of the TaskManager that runs
/// it. The JobManager holds no rows itself.
pub struct ClusterSinkCatalog {
    cluster: Box<dyn Fn() -> Option<Arc<crate::dispatcher::Cluster>> + Send + Sync>,
}

impl std::fmt::Debug for ClusterSinkCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSinkCatalog").finish_non_exhaustive()
    }
}

impl ClusterSinkCatalog {
    /// Over the cluster state `cluster` returns (the current leader's; `None` while this
    /// JobManager does not lead, when it lists nothing).
    pub fn new(
        cluster: impl Fn() -> Option<Arc<crate::dispatcher::Cluster>> + Send + Sync + 'static,
    ) -> Self {
        ClusterSinkCatalog {
            cluster: Box::new(cluster),
        }
    }
}

impl SinkTableCatalog for ClusterSinkCatalog {
    fn tables(&self) -> Vec<SinkTableInfo> {
        use sluice_engine::connector::SinkSpec;
        use sluice_engine::graph::OperatorSpec;

        let Some(cluster) = (self.cluster)() else {
            return Vec::new();
        };
        let state = cluster.lock();
        let mut tables = Vec::new();
        for job in state.jobs.values() {
            for vertex in job.graph.vertices() {
                let OperatorSpec::Sink {
                    connector:
                        SinkSpec::Flight {
                            name, primary_key, ..
                        },
                } = &vertex.operator
                else {
                    continue;
                };
                let Some(input) = job.graph.input_schemas(vertex.id).into_iter().next() else {
                    continue;
                };
                // Served as rows: an upsert table's changelog kind column is not part of them.
                let fields: Vec<_> = input
                    .fields()
                    .iter()
                    .filter(|f| f.name() != sluice_engine::element::ROW_KIND_COLUMN)
                    .cloned()
                    .collect();
                let chain = job.execution.chain_of[vertex.id.0 as usize];
                let partitions = (0..vertex.parallelism)
                    .map(|subtask| {
                        let location = job
                            .tasks
                            .iter()
                            .find(|t| t.chain == chain && t.subtask.0 == subtask)
                            .and_then(|t| t.task_manager.as_ref())
                            .and_then(|tm| state.resources.get(tm))
                            .filter(|r| r.flight_port != 0)
                            .map(|r| {
                                let address =
                                    crate::dispatcher::data_address(&r.rpc_address, r.flight_port);
                                format!("grpc://{address}")
                            });
                        PartitionLocation {
                            partition: Some(subtask),
                            location,
                        }
                    })
                    .collect();
                tables.push(SinkTableInfo {
                    name: name.clone(),
                    schema: Arc::new(arrow::datatypes::Schema::new(fields)),
                    job_id: job.id.0.clone(),
                    job_state: job.state.as_str().to_string(),
                    primary_key: primary_key.clone(),
                    rows: None,
                    partitions,
                });
            }
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables
    }

    fn scan(
        &self,
        table: &str,
        _partition: Option<u32>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ScanError> {
        Err(ScanError::Failed(format!(
            "sink table '{table}' lives on the TaskManagers: read each endpoint of its \
             FlightInfo from the endpoint's location"
        )))
    }
}
