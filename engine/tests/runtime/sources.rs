//! Generator sources through the runtime, and cancellation of an unbounded job.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};
use sluice_engine::Error;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::connector::{DatagenSource, NexmarkSource, SinkSpec, SourceSpec};
use sluice_engine::runtime::JobEnvironment;

use crate::runtime;

fn datagen(options: &[(&str, &str)]) -> SourceSpec {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]));
    let options: BTreeMap<String, String> = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    SourceSpec::Datagen(DatagenSource::new(schema, options))
}

#[test]
fn datagen_shares_sequences_over_subtasks() {
    let env = StreamEnvironment::new("datagen").with_parallelism(3);
    env.source(
        "gen",
        datagen(&[
            ("number-of-rows", "1000"),
            ("rows-per-second", "1000000000"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "1"),
            ("fields.id.end", "1000"),
            ("fields.v.min", "0"),
            ("fields.v.max", "9"),
        ]),
    )
    .unwrap()
    .collect("out")
    .unwrap();
    let output = env.execute_on(&runtime(3)).unwrap();
    let mut ids = BTreeSet::new();
    for batch in output.collected.batches("out") {
        let id = batch.column(0).as_primitive::<Int64Type>();
        let v = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            assert!(ids.insert(id.value(i)), "id {} twice", id.value(i));
            assert!(v.is_null(i) || (0..=9).contains(&v.value(i)));
        }
    }
    assert_eq!(ids, (1..=1000).collect::<BTreeSet<i64>>());
}

#[test]
fn a_bad_datagen_option_is_rejected_when_the_graph_is_built() {
    let env = StreamEnvironment::new("datagen");
    let error = env
        .source("gen", datagen(&[("fields.v.min", "abc")]))
        .err()
        .expect("the option is invalid")
        .to_string();
    assert!(error.contains("fields.v.min"), "{error}");
    assert!(error.contains("abc"), "{error}");
}

#[test]
fn an_unbounded_job_stops_when_cancelled() {
    let env = StreamEnvironment::new("endless").with_parallelism(2);
    let endless = NexmarkConfig::default().with_events(None);
    env.source(
        "bid",
        SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, endless)),
    )
    .unwrap()
    .key_by(["auction"])
    .count("n")
    .unwrap()
    .sink("out", SinkSpec::Blackhole)
    .unwrap();
    let (graph, registry) = env.build().unwrap();
    let job_env = JobEnvironment {
        registry,
        ..Default::default()
    };
    let handle = runtime(2).submit(&graph, &job_env).unwrap();
    assert!(
        !handle.is_finished(),
        "an unbounded job cannot have finished"
    );
    handle.cancel();
    assert!(matches!(handle.wait(), Err(Error::Cancelled)));
}
