//! Watermarks from a bounded-out-of-orderness strategy at the source, through an exchange.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_engine::api::StreamEnvironment;
use sluice_engine::connector::{MemorySource, SourceSpec};
use sluice_engine::element::Watermark;
use sluice_engine::operator::{Operator, OperatorContext, Output};
use sluice_engine::time::WatermarkStrategy;

use crate::runtime;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn batches(times: &[i64], per_batch: usize) -> Vec<RecordBatch> {
    times
        .chunks(per_batch)
        .map(|chunk| {
            let keys: ArrayRef =
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|t| t % 3)));
            let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(chunk.to_vec()));
            RecordBatch::try_new(schema(), vec![keys, ts]).unwrap()
        })
        .collect()
}

/// Records every watermark it sees and passes everything on.
struct Recorder {
    seen: Arc<Mutex<Vec<Watermark>>>,
}

impl Operator for Recorder {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> sluice_engine::Result<()> {
        out.push_batch(batch);
        Ok(())
    }

    fn process_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Output,
    ) -> sluice_engine::Result<()> {
        self.seen.lock().unwrap().push(watermark);
        out.push_watermark(watermark);
        Ok(())
    }
}

#[test]
fn watermarks_advance_monotonically_and_close_with_the_maximum() {
    // Out of order within 2 s: 0, 3000, 1000, 6000, 4500, … up to about 60 s.
    let times: Vec<i64> = (0..200)
        .map(|i| i * 300 + if i % 2 == 0 { 0 } else { -200 })
        .map(|t: i64| t.max(0))
        .collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder_seen = seen.clone();
    // The recorder sits behind a rebalance so it sees the minimum over two channels.
    let env2 = StreamEnvironment::new("watermarks-min").with_parallelism(2);
    let source = SourceSpec::Memory(MemorySource::new(schema(), batches(&times, 10)).unwrap());
    env2.source_with_watermarks(
        "events",
        source,
        WatermarkStrategy::bounded_out_of_orderness("ts", Duration::from_secs(2)),
    )
    .unwrap()
    .rebalance()
    .unwrap()
    .parallelism(1)
    .unwrap()
    .transform(
        "Recorder",
        schema(),
        Arc::new(move |_ctx: &OperatorContext| {
            Ok(Box::new(Recorder {
                seen: recorder_seen.clone(),
            }) as Box<dyn Operator>)
        }),
    )
    .unwrap()
    .parallelism(1)
    .unwrap()
    .collect("out")
    .unwrap();
    env2.execute_on(&runtime(2)).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "not strictly increasing: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&Watermark::MAX));
    assert!(seen.len() > 2, "only the final watermark arrived: {seen:?}");
    let largest_event = *times.iter().max().unwrap();
    for w in &seen[..seen.len() - 1] {
        assert!(
            w.0 < largest_event - 2_000,
            "watermark {w:?} passed the bound"
        );
    }
}

#[test]
fn a_watermark_on_an_unknown_column_is_rejected() {
    let env = StreamEnvironment::new("bad-watermark");
    let source = SourceSpec::Memory(MemorySource::new(schema(), vec![]).unwrap());
    let error = env
        .source_with_watermarks(
            "events",
            source,
            WatermarkStrategy::bounded_out_of_orderness("tss", Duration::from_secs(1)),
        )
        .err()
        .expect("unknown column")
        .to_string();
    assert!(error.contains("'tss'"), "{error}");
    assert!(error.contains("vertex 'events'"), "{error}");
}

#[test]
fn an_idle_input_stops_holding_back_the_watermark_after_the_timeout() {
    use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
    use sluice_engine::connector::{DatagenSource, NexmarkSource};
    use sluice_engine::expr::col;
    use sluice_engine::runtime::{JobEnvironment, LocalRuntime, RuntimeConfig};
    use std::time::Instant;

    let ts_schema = Arc::new(Schema::new(vec![Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    )]));
    let env = StreamEnvironment::new("idle").with_parallelism(1);
    // Practically idle: one row per second, event times within the first second, so while it
    // counts it holds the watermark below 1 s.
    let quiet = DatagenSource::new(
        ts_schema.clone(),
        [
            ("rows-per-second", "1"),
            ("reference-time", "1000"),
            ("fields.ts.max-past", "1000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    let quiet = env
        .source_with_watermarks(
            "quiet",
            SourceSpec::Datagen(quiet),
            WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO),
        )
        .unwrap();
    let busy = env
        .source_with_watermarks(
            "busy",
            SourceSpec::Nexmark(NexmarkSource::new(
                NexmarkTable::Bid,
                NexmarkConfig::default()
                    .with_events(None)
                    .with_base_time_ms(0)
                    .with_first_event_rate(1000),
            )),
            WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::ZERO),
        )
        .unwrap()
        .project([("ts", col("dateTime"))])
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder_seen = seen.clone();
    quiet
        .union(&[&busy])
        .unwrap()
        .transform(
            "Recorder",
            ts_schema,
            Arc::new(move |_ctx: &OperatorContext| {
                Ok(Box::new(Recorder {
                    seen: recorder_seen.clone(),
                }) as Box<dyn Operator>)
            }),
        )
        .unwrap()
        .sink("out", sluice_engine::connector::SinkSpec::Blackhole)
        .unwrap();
    let (graph, registry) = env.build().unwrap();
    let runtime = LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(2)
            .with_pinning(false)
            .with_idle_timeout(Some(Duration::from_millis(200))),
    );
    let handle = runtime
        .submit(
            &graph,
            &JobEnvironment {
                registry,
                ..Default::default()
            },
        )
        .unwrap();
    // The busy source's event time advances 1 ms per event, far ahead of the wall clock; once
    // the quiet input is idle, the union's watermark follows the busy one past one hour.
    let deadline = Instant::now() + Duration::from_secs(60);
    let advanced = loop {
        let last = seen.lock().unwrap().last().copied();
        if last.is_some_and(|w| w.0 > 3_600_000) {
            break true;
        }
        if Instant::now() > deadline || handle.is_finished() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    handle.cancel();
    let _ = handle.wait();
    assert!(
        advanced,
        "watermark stalled behind the idle input: {:?}",
        seen.lock().unwrap().last()
    );
}
