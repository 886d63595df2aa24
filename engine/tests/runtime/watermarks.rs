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
