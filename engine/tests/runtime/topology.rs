use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use sluice_engine::api::StreamEnvironment;

use crate::{key_value_batches, key_value_schema, runtime};

fn sum_of_keys(batches: &[arrow::array::RecordBatch]) -> i64 {
    batches
        .iter()
        .map(|b| {
            b.column(0)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .sum::<i64>()
        })
        .sum()
}

#[test]
fn union_of_two_sources_at_different_parallelism_keeps_every_row() {
    let env = StreamEnvironment::new("union").with_parallelism(3);
    let left_rows: Vec<_> = (0..500).map(|i| (i, None)).collect();
    let right_rows: Vec<_> = (500..800).map(|i| (i, None)).collect();
    let left = env
        .from_batches("left", key_value_schema(), key_value_batches(&left_rows, 7))
        .unwrap()
        .parallelism(2)
        .unwrap();
    let right = env
        .from_batches(
            "right",
            key_value_schema(),
            key_value_batches(&right_rows, 13),
        )
        .unwrap();
    left.union(&[&right]).unwrap().collect("out").unwrap();
    let output = env.execute_on(&runtime(2)).unwrap();
    let batches = output.collected.batches("out");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 800);
    assert_eq!(sum_of_keys(&batches), (0..800).sum::<i64>());
    assert_eq!(
        output.result.vertex("Union").unwrap().metrics.records_in,
        800
    );
}

#[test]
fn rebalance_spreads_batches_and_metrics_add_up() {
    let env = StreamEnvironment::new("rebalance").with_parallelism(1);
    let rows: Vec<_> = (0..1000).map(|i| (i, Some(i))).collect();
    env.from_batches("rows", key_value_schema(), key_value_batches(&rows, 10))
        .unwrap()
        .rebalance()
        .unwrap()
        .parallelism(4)
        .unwrap()
        .collect("out")
        .unwrap();
    let output = env.execute_on(&runtime(4)).unwrap();
    let result = &output.result;
    assert_eq!(result.vertex("rows").unwrap().metrics.records_out, 1000);
    assert_eq!(result.vertex("Rebalance").unwrap().metrics.batches_in, 100);
    assert_eq!(result.vertex("out").unwrap().metrics.records_in, 1000);
    assert_eq!(
        sum_of_keys(&output.collected.batches("out")),
        (0..1000).sum::<i64>()
    );
}

#[test]
fn job_graph_of_the_api_round_trips_through_json() {
    let env = StreamEnvironment::new("json").with_parallelism(2);
    env.from_batches(
        "rows",
        key_value_schema(),
        key_value_batches(&[(1, Some(2))], 1),
    )
    .unwrap()
    .key_by(["k"])
    .count("n")
    .unwrap()
    .collect("out")
    .unwrap();
    let (graph, _) = env.build().unwrap();
    let json = graph.to_json().unwrap();
    let back = sluice_engine::graph::JobGraph::from_json(&json).unwrap();
    assert_eq!(back.to_json().unwrap(), json);
}
