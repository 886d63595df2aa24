use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use sluice_engine::Error;
use sluice_engine::api::StreamEnvironment;

use crate::{key_value_batches, key_value_schema, runtime};

fn rows(n: i64) -> Vec<(i64, Option<i64>)> {
    (0..n).map(|i| (i % 10, Some(i))).collect()
}

#[test]
fn an_operator_error_fails_the_job_naming_operator_and_subtask() {
    let env = StreamEnvironment::new("failing").with_parallelism(2);
    env.from_batches(
        "rows",
        key_value_schema(),
        key_value_batches(&rows(1000), 10),
    )
    .unwrap()
    .map_batches("Explode", key_value_schema(), |batch: &RecordBatch| {
        if batch.num_rows() > 0 {
            Err(Error::data("test operator", "refusing this batch"))
        } else {
            Ok(batch.clone())
        }
    })
    .unwrap()
    .collect("out")
    .unwrap();
    let error = env.execute_on(&runtime(2)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("operator 'Explode' (subtask"), "{message}");
    assert!(message.contains("refusing this batch"), "{message}");
}

#[test]
fn a_panic_fails_the_job_promptly_instead_of_hanging() {
    let started = Instant::now();
    let env = StreamEnvironment::new("panicking").with_parallelism(2);
    env.from_batches(
        "rows",
        key_value_schema(),
        key_value_batches(&rows(100_000), 100),
    )
    .unwrap()
    .key_by(["k"])
    .count("n")
    .unwrap()
    .map_batches(
        "Boom",
        crate::key_value_schema(),
        |_batch: &RecordBatch| -> sluice_engine::Result<RecordBatch> {
            panic!("boom in a user function")
        },
    )
    .unwrap()
    .collect("out")
    .unwrap();
    let error = env.execute_on(&runtime(2)).unwrap_err();
    assert!(
        matches!(error, Error::Panic { ref operator, .. } if operator == "Boom"),
        "{error}"
    );
    assert!(error.to_string().contains("boom in a user function"));
    // Generous bound: the point is "returns", not speed; a hang would never get here.
    assert!(started.elapsed() < Duration::from_secs(60));
}
