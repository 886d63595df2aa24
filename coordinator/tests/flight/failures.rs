//! Reading a sink table while its job fails and recovers: a checkpointed job over Nexmark
//! bids fails once (retryably) mid-way and restarts from its latest completed checkpoint,
//! while a Flight client reads the table again and again over gRPC. No read may show a row
//! the final table lacks, or a row more often than the final table has it, and the final
//! table equals a failure-free run's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::display::array_value_to_string;
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::TryStreamExt;
use sluice_coordinator::sink_tables::LocalSinkCatalog;
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::Error;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::checkpoint::{CheckpointConfig, RestartStrategy};
use sluice_engine::connector::{NexmarkSource, SinkTables, SourceSpec};
use sluice_engine::runtime::{LocalRuntime, RuntimeConfig};
use sluice_flight::sink_table::{SinkTableServer, SinkTableService};

const EVENTS: u64 = 60_000;
/// The failure comes after this many rows and a completed checkpoint.
const FAIL_AFTER: u64 = 20_000;

fn has_completed_checkpoint(dir: &Path) -> bool {
    let Ok(jobs) = std::fs::read_dir(dir) else {
        return false;
    };
    jobs.flatten().any(|job| {
        std::fs::read_dir(job.path()).is_ok_and(|chks| {
            chks.flatten()
                .any(|chk| chk.path().join("_metadata").is_file())
        })
    })
}

/// Bids through an operator that fails once (when `failure` is given) after `FAIL_AFTER`
/// rows and a completed checkpoint, into Flight table `bids`.
fn job(failure: Option<(Arc<AtomicBool>, PathBuf)>) -> StreamEnvironment {
    let env = StreamEnvironment::new("bids-to-flight").with_parallelism(2);
    let config = NexmarkConfig::default()
        .with_seed(11)
        .with_events(Some(EVENTS))
        .with_first_event_rate(10_000);
    let seen = Arc::new(AtomicU64::new(0));
    env.source(
        "bid",
        SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config)),
    )
    .unwrap()
    .map_batches(
        "FailOnce",
        NexmarkTable::Bid.schema(),
        move |batch: &RecordBatch| {
            if let Some((failed, dir)) = &failure
                && !failed.load(Ordering::Acquire)
            {
                // Slow enough that checkpoints complete and readers see the table grow.
                std::thread::sleep(Duration::from_millis(5));
                let total = seen.fetch_add(batch.num_rows() as u64, Ordering::AcqRel);
                if total >= FAIL_AFTER
                    && has_completed_checkpoint(dir)
                    && !failed.swap(true, Ordering::AcqRel)
                {
                    return Err(Error::Unavailable {
                        what: "test operator FailOnce".into(),
                        message: "injected failure".into(),
                    });
                }
            }
            Ok(batch.clone())
        },
    )
    .unwrap()
    .sink_to_flight("bids", &[])
    .unwrap();
    env
}

fn runtime(checkpointing: Option<CheckpointConfig>) -> LocalRuntime {
    LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(2)
            .with_pinning(false)
            .with_batch_size(200)
            .with_checkpointing(checkpointing)
            .with_restart_strategy(RestartStrategy::FixedDelay {
                attempts: 1,
                delay: Duration::from_millis(10),
            }),
    )
}

type Counted = BTreeMap<String, usize>;

fn count(batches: &[RecordBatch]) -> Counted {
    let mut counted = Counted::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let text: Vec<String> = (0..batch.num_columns())
                .map(|c| array_value_to_string(batch.column(c), row).unwrap())
                .collect();
            *counted.entry(text.join("|")).or_default() += 1;
        }
    }
    counted
}

/// Every row of the table, read over Flight: GetFlightInfo, then DoGet on each endpoint (none
/// before the job created the table).
async fn read(client: &mut FlightClient) -> Vec<RecordBatch> {
    let info = match client
        .get_flight_info(FlightDescriptor::new_path(vec!["bids".into()]))
        .await
    {
        Ok(info) => info,
        // Before the job opened its sink.
        Err(arrow_flight::error::FlightError::Tonic(status))
            if status.code() == tonic::Code::NotFound =>
        {
            return Vec::new();
        }
        Err(error) => panic!("GetFlightInfo: {error}"),
    };
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("an endpoint has a ticket");
        let stream = client.do_get(ticket).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    batches
}

#[test]
fn reads_during_a_failure_and_restart_never_show_a_row_the_result_lacks() {
    let expected = {
        let tables = SinkTables::new();
        job(None)
            .execute_with(&runtime(None), tables.clone())
            .unwrap();
        let (_, batches) = tables.scan("bids", None).unwrap().unwrap();
        count(&batches)
    };
    assert!(expected.values().all(|&n| n == 1) && expected.len() > 50_000);

    let dir = tempfile::tempdir().unwrap();
    let tables = SinkTables::new();
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = io
        .block_on(SinkTableServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            SinkTableService::new(Arc::new(LocalSinkCatalog::new(tables.clone()))),
        ))
        .unwrap();
    let address = server.address();
    io.spawn(server.serve(std::future::pending()));

    let failed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let handle = io.handle().clone();
        std::thread::spawn(move || {
            handle.block_on(async move {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                let mut client = FlightClient::new(channel);
                let mut reads = Vec::new();
                while !done.load(Ordering::Acquire) {
                    reads.push(count(&read(&mut client).await));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                reads
            })
        })
    };
    let config = CheckpointConfig::new(Duration::from_millis(50), dir.path()).with_num_retained(2);
    let result = job(Some((failed.clone(), dir.path().to_path_buf())))
        .execute_with(&runtime(Some(config)), tables.clone())
        .unwrap()
        .result;
    done.store(true, Ordering::Release);
    let reads = reader.join().unwrap();

    assert!(failed.load(Ordering::Acquire), "the failure was injected");
    assert_eq!(result.restarts, 1);
    assert!(result.restored_from.is_some(), "restored from a checkpoint");
    let (_, batches) = tables.scan("bids", None).unwrap().unwrap();
    let actual = count(&batches);
    assert_eq!(
        actual.len(),
        expected.len(),
        "rows lost or duplicated in the final table"
    );
    assert!(
        actual == expected,
        "the final table differs from a failure-free run"
    );

    let growing = reads
        .iter()
        .filter(|r| !r.is_empty() && r.len() < expected.len())
        .count();
    assert!(
        growing >= 2,
        "reads saw the table part-way, more than once ({} reads)",
        reads.len()
    );
    for (i, read) in reads.iter().enumerate() {
        let wrong: Vec<_> = read
            .iter()
            .filter(|(row, n)| actual.get(*row).is_none_or(|m| m < *n))
            .take(3)
            .collect();
        assert!(
            wrong.is_empty(),
            "read {i} showed rows the result lacks (or twice): {wrong:?}"
        );
    }
}
