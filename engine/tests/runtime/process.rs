//! Keyed process functions on the local runtime: the fraud detector against its row-by-row
//! reference at several parallelisms and batch sizes, timer order and dedup, side outputs,
//! and state metrics.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use sluice_engine::api::{
    Collector, KeyedProcessFunction, OutputTag, ProcessContext, SIDE_OUTPUT_METADATA_KEY,
    StreamEnvironment,
};
use sluice_engine::connector::{MemorySource, SourceSpec};
use sluice_engine::state::KeyId;
use sluice_engine::time::{Timer, WatermarkStrategy};

use crate::{key_value_batches, key_value_schema, runtime};

#[expect(dead_code, reason = "the example's `main` is not used by the tests")]
#[path = "../../examples/fraud_detection.rs"]
mod fraud_detection;

#[test]
fn fraud_detection_matches_the_row_by_row_reference() {
    let rows = fraud_detection::transactions(6_000, 40, 7);
    let expected = {
        let mut alerts = fraud_detection::reference_alerts(&rows);
        alerts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        alerts
    };
    assert!(
        expected.len() >= 5,
        "too few alerts to test: {}",
        expected.len()
    );
    for parallelism in [1, 2, 4] {
        for batch_size in [1, 37, 1_000] {
            let env = fraud_detection::build_job(&rows, batch_size, parallelism).unwrap();
            let output = env.execute_on(&runtime(parallelism as usize)).unwrap();
            let alerts = fraud_detection::alerts_of(&output.collected.batches("alerts"));
            assert_eq!(
                alerts, expected,
                "parallelism {parallelism}, batch size {batch_size}"
            );
            let metrics = output.result.vertex("FraudDetector").unwrap().metrics;
            assert_eq!(metrics.state_keys, 40, "every account is a key");
            assert!(metrics.state_bytes > 0);
        }
    }
}

fn timed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
    ]))
}

fn fired_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("watermark", DataType::Int64, false),
    ]))
}

/// Registers an event-time timer at every row's `ts`, twice, and emits
/// `(key, timer, watermark when fired)` from `on_timers`.
struct TimerEcho;

impl KeyedProcessFunction for TimerEcho {
    fn process_batch(
        &mut self,
        batch: &RecordBatch,
        keys: &[KeyId],
        ctx: &mut ProcessContext,
        _out: &mut Collector,
    ) -> sluice_engine::Result<()> {
        let ts = batch.column(1).as_primitive::<Int64Type>();
        for (row, &key) in keys.iter().enumerate() {
            ctx.register_event_time_timer(key, ts.value(row));
            ctx.register_event_time_timer(key, ts.value(row));
        }
        Ok(())
    }

    fn on_timers(
        &mut self,
        timers: &[Timer],
        ctx: &mut ProcessContext,
        out: &mut Collector,
    ) -> sluice_engine::Result<()> {
        let keys: Vec<KeyId> = timers.iter().map(|t| t.key).collect();
        let mut columns = ctx.key_columns(&keys)?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            timers.iter().map(|t| t.timestamp),
        )));
        columns.push(Arc::new(Int64Array::from_value(
            ctx.current_watermark().0,
            timers.len(),
        )));
        out.emit(RecordBatch::try_new(fired_schema(), columns).unwrap())
    }
}

#[test]
fn timers_fire_once_each_in_timestamp_order_per_key() {
    // 3 keys; timestamps rise with jitter and repeat (duplicates must fire once).
    let rows: Vec<(i64, i64)> = (0..3_000i64)
        .map(|i| (i % 3, (i / 2) * 10 + (i * 7) % 13))
        .collect();
    let batches: Vec<RecordBatch> = rows
        .chunks(50)
        .map(|chunk| {
            RecordBatch::try_new(
                timed_schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.1))),
                ],
            )
            .unwrap()
        })
        .collect();
    let env = StreamEnvironment::new("timer-order").with_parallelism(2);
    env.source_with_watermarks(
        "events",
        SourceSpec::Memory(MemorySource::new(timed_schema(), batches).unwrap()),
        WatermarkStrategy::bounded_out_of_orderness("ts", Duration::from_millis(100)),
    )
    .unwrap()
    .parallelism(1)
    .unwrap()
    .key_by(["k"])
    .process("TimerEcho", fired_schema(), || TimerEcho)
    .unwrap()
    .collect("fired")
    .unwrap();
    let output = env.execute_on(&runtime(2)).unwrap();

    let mut fired: Vec<(i64, i64, i64)> = Vec::new();
    for batch in output.collected.batches("fired") {
        let c = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
        let (k, ts, wm) = (c(0), c(1), c(2));
        fired.extend((0..batch.num_rows()).map(|i| (k.value(i), ts.value(i), wm.value(i))));
    }
    let mut expected: Vec<(i64, i64)> = rows.clone();
    expected.sort();
    expected.dedup();
    for key in 0..3 {
        let of_key: Vec<i64> = fired.iter().filter(|f| f.0 == key).map(|f| f.1).collect();
        let want: Vec<i64> = expected
            .iter()
            .filter(|e| e.0 == key)
            .map(|e| e.1)
            .collect();
        assert_eq!(of_key, want, "key {key}: once each, ascending");
    }
    assert!(
        fired.iter().all(|&(_, ts, wm)| ts <= wm),
        "a timer fired before the watermark reached it"
    );
    assert!(
        fired.iter().any(|&(_, _, wm)| wm < i64::MAX),
        "all timers waited for the end of input"
    );
}

/// Sends rows with a negative `v` to the side output, the rest to the main output.
struct SplitNegative {
    negative: OutputTag,
}

impl KeyedProcessFunction for SplitNegative {
    fn process_batch(
        &mut self,
        batch: &RecordBatch,
        _keys: &[KeyId],
        _ctx: &mut ProcessContext,
        out: &mut Collector,
    ) -> sluice_engine::Result<()> {
        let v = batch.column(1).as_primitive::<Int64Type>();
        let negative: BooleanArray = v.iter().map(|v| Some(v.unwrap_or(0) < 0)).collect();
        let positive = arrow::compute::not(&negative).unwrap();
        out.emit(filter_record_batch(batch, &positive).unwrap())?;
        let side = filter_record_batch(batch, &negative).unwrap();
        out.emit_side(&self.negative, side.project(&[0, 1]).unwrap())
    }
}

#[test]
fn side_outputs_become_their_own_stream() {
    let rows: Vec<(i64, Option<i64>)> = (0..1_000i64)
        .map(|i| (i % 17, Some(if i % 3 == 0 { -i } else { i })))
        .collect();
    let negative = OutputTag::new(
        "negative",
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("value", DataType::Int64, true),
        ])),
    );
    let env = StreamEnvironment::new("side-outputs").with_parallelism(2);
    let tag = negative.clone();
    let streams = env
        .from_batches("numbers", key_value_schema(), key_value_batches(&rows, 64))
        .unwrap()
        .key_by(["k"])
        .process_with_side_outputs(
            "Split",
            key_value_schema(),
            std::slice::from_ref(&negative),
            move || SplitNegative {
                negative: tag.clone(),
            },
        )
        .unwrap();
    streams.main.collect("main").unwrap();
    streams
        .side_output(&negative)
        .unwrap()
        .collect("negative")
        .unwrap();
    let output = env.execute_on(&runtime(2)).unwrap();

    let values = |name: &str| {
        let mut all = Vec::new();
        for batch in output.collected.batches(name) {
            assert!(
                !batch
                    .schema()
                    .metadata()
                    .contains_key(SIDE_OUTPUT_METADATA_KEY),
                "{name}: marker leaked"
            );
            all.extend(
                batch
                    .column(1)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        all.sort();
        all
    };
    let main = values("main");
    let side = values("negative");
    assert!(main.iter().all(|&v| v >= 0));
    assert!(side.iter().all(|&v| v < 0));
    assert_eq!(main.len() + side.len(), rows.len());
    assert_eq!(side.len(), rows.iter().filter(|r| r.1 < Some(0)).count());
    let side_schema = output.collected.batches("negative")[0].schema();
    assert_eq!(side_schema.field(0).name(), "key");
}

/// Logs rows and processing-time timers in the order the operator sees them.
struct ClockLogger {
    log: Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl KeyedProcessFunction for ClockLogger {
    fn process_batch(
        &mut self,
        _batch: &RecordBatch,
        keys: &[KeyId],
        ctx: &mut ProcessContext,
        _out: &mut Collector,
    ) -> sluice_engine::Result<()> {
        let now = ctx.current_processing_time();
        for &key in keys {
            self.log.lock().unwrap().push("row");
            ctx.register_processing_time_timer(key, now + 50);
        }
        Ok(())
    }

    fn on_timers(
        &mut self,
        timers: &[Timer],
        _ctx: &mut ProcessContext,
        _out: &mut Collector,
    ) -> sluice_engine::Result<()> {
        let mut log = self.log.lock().unwrap();
        log.extend(timers.iter().map(|_| "timer"));
        Ok(())
    }
}

#[test]
fn processing_time_timers_fire_while_no_input_arrives() {
    use sluice_engine::connector::{DatagenSource, SinkSpec};
    use sluice_engine::runtime::JobEnvironment;
    use std::time::Instant;

    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
    let options = [
        ("rows-per-second", "1"),
        ("fields.k.min", "0"),
        ("fields.k.max", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let env = StreamEnvironment::new("clock");
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let function_log = log.clone();
    env.source(
        "ticks",
        SourceSpec::Datagen(DatagenSource::new(schema.clone(), options)),
    )
    .unwrap()
    .key_by(["k"])
    .process("ClockLogger", schema, move || ClockLogger {
        log: function_log.clone(),
    })
    .unwrap()
    .sink("out", SinkSpec::Blackhole)
    .unwrap();
    let (graph, registry) = env.build().unwrap();
    let handle = runtime(1)
        .submit(
            &graph,
            &JobEnvironment {
                registry,
                ..Default::default()
            },
        )
        .unwrap();
    // Rows come every second; each row's timer is due 50 ms later, so with the clock ticking
    // every timer fires before the next row arrives.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().iter().filter(|e| **e == "row").count() < 3
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.cancel();
    let _ = handle.wait();
    let log = log.lock().unwrap().clone();
    let rows_seen = log.iter().filter(|e| **e == "row").count();
    assert!(rows_seen >= 3, "{log:?}");
    let first_rows: Vec<&str> = log.iter().copied().take(5).collect();
    assert_eq!(
        first_rows,
        ["row", "timer", "row", "timer", "row"],
        "{log:?}"
    );
}
