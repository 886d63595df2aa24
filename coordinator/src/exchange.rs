//! A TaskManager's side of the data exchange: from a deployment's task locations to the
//! Flight exchange of the job's slice.
//!
//! The JobMaster tells every TaskManager where each task of the job runs (its TaskManager id
//! and that TaskManager's Flight address). Every vertex of a chain runs where the chain's
//! subtask runs, so the exchange places each vertex's subtask with its chain's; channels
//! between two subtasks of this TaskManager stay in-process queues, the others are Flight
//! streams.

use sluice_engine::graph::JobGraph;
use sluice_engine::ids::SubtaskIndex;
use sluice_engine::runtime::ExecutionGraph;
use sluice_flight::{ExchangePlacement, TaskManagerId};

use crate::rpc::proto;

/// Where every task of a job runs, for the exchange. Fails, naming the location, when a
/// location names a chain or subtask the job does not have, or a task is located twice or not
/// at all.
pub fn placement(
    graph: &JobGraph,
    execution: &ExecutionGraph,
    locations: &[proto::TaskLocation],
) -> Result<ExchangePlacement, String> {
    let mut placement = ExchangePlacement::for_graph(graph);
    let mut located = vec![false; execution.tasks.len()];
    for location in locations {
        let chain = execution
            .chains
            .get(location.chain as usize)
            .ok_or_else(|| {
                format!(
                    "the location of chain {}, subtask {} names a chain the job does not have \
                     (it has {})",
                    location.chain,
                    location.subtask,
                    execution.chains.len()
                )
            })?;
        let task = execution
            .tasks
            .iter()
            .position(|t| t.chain == location.chain as usize && t.subtask.0 == location.subtask)
            .ok_or_else(|| {
                format!(
                    "the location of chain {}, subtask {} names a subtask the job does not have \
                     (parallelism {})",
                    location.chain, location.subtask, chain.parallelism
                )
            })?;
        if std::mem::replace(&mut located[task], true) {
            return Err(format!(
                "chain {}, subtask {} is located twice",
                location.chain, location.subtask
            ));
        }
        let host = TaskManagerId(location.task_manager_id.clone());
        for vertex in &chain.vertices {
            placement =
                placement.with_subtask(*vertex, SubtaskIndex(location.subtask), host.clone());
        }
        if !location.data_address.is_empty() {
            placement = placement.with_task_manager(host, location.data_address.clone());
        }
    }
    if let Some(task) = located.iter().position(|l| !l) {
        let task = &execution.tasks[task];
        return Err(format!(
            "chain {}, subtask {} has no location",
            task.chain, task.subtask
        ));
    }
    Ok(placement)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use sluice_engine::api::StreamEnvironment;
    use sluice_engine::connector::SinkSpec;
    use sluice_engine::element::{StreamElement, Watermark};
    use sluice_engine::ids::{AttemptNumber, JobId};
    use sluice_engine::runtime::exchange::{ChannelId, ExchangeFactory, SlotWaker};
    use sluice_flight::{ExchangeConfig, ExchangeServer, FlightExchange};

    use super::*;

    /// source -> rebalance -> sink at parallelism 2: two chains (source; sink), four tasks.
    fn job() -> (JobGraph, ExecutionGraph) {
        let env = StreamEnvironment::new("t").with_parallelism(2);
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        env.from_batches("src", schema, vec![])
            .unwrap()
            .rebalance()
            .unwrap()
            .sink("sink", SinkSpec::Blackhole)
            .unwrap();
        let graph = env.build().unwrap().0;
        let execution = ExecutionGraph::new(&graph, 2);
        (graph, execution)
    }

    fn locations(execution: &ExecutionGraph) -> Vec<proto::TaskLocation> {
        execution
            .tasks
            .iter()
            .map(|t| proto::TaskLocation {
                chain: t.chain as u32,
                subtask: t.subtask.0,
                task_manager_id: format!("tm{}", t.slot.0),
                data_address: format!("127.0.0.1:{}", 7000 + t.slot.0),
            })
            .collect()
    }

    #[test]
    fn every_task_must_be_located_exactly_once_at_a_subtask_the_job_has() {
        let (graph, execution) = job();
        assert_eq!(execution.chains.len(), 2, "{execution:?}");
        let all = locations(&execution);
        assert!(placement(&graph, &execution, &all).is_ok());

        let missing = placement(&graph, &execution, &all[1..]).unwrap_err();
        assert!(missing.contains("has no location"), "{missing}");

        let mut twice = all.clone();
        twice[1] = twice[0].clone();
        let error = placement(&graph, &execution, &twice).unwrap_err();
        assert!(error.contains("located twice"), "{error}");

        let mut bad = all.clone();
        bad[0].subtask = 7;
        let error = placement(&graph, &execution, &bad).unwrap_err();
        assert!(error.contains("subtask 7"), "{error}");

        let mut bad = all;
        bad[0].chain = 9;
        let error = placement(&graph, &execution, &bad).unwrap_err();
        assert!(error.contains("chain 9"), "{error}");
    }

    #[test]
    fn channels_between_task_managers_go_to_the_peer_and_local_ones_stay_in_process() {
        let (graph, execution) = job();
        let server = ExchangeServer::start("127.0.0.1:0", ExchangeConfig::default()).unwrap();
        let edge = execution.exchange_edges[0] as u32;
        let channel = |from: u32, to: u32| ChannelId {
            edge,
            from: SubtaskIndex(from),
            to: SubtaskIndex(to),
        };
        let exchange = |locations: &[proto::TaskLocation]| {
            FlightExchange::new(
                server.clone(),
                JobId("j".into()),
                AttemptNumber(0),
                TaskManagerId("tm0".into()),
                placement(&graph, &execution, locations).unwrap(),
            )
        };
        let waker = SlotWaker::new();
        let all = locations(&execution);
        let on_tm0 = exchange(&all);
        // Both ends on tm0: an in-process queue.
        let mut output = on_tm0.output(channel(0, 0), &waker).unwrap();
        let mut input = on_tm0.input(channel(0, 0), &waker).unwrap();
        assert!(
            output
                .try_send(StreamElement::Watermark(Watermark(5)))
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            input.try_recv().unwrap(),
            Some(StreamElement::Watermark(Watermark(5)))
        ));
        // The consumer on tm1: a Flight stream (connected lazily).
        assert!(on_tm0.output(channel(0, 1), &waker).is_ok());
        let error = on_tm0
            .output(channel(1, 0), &waker)
            .err()
            .expect("subtask 1 of the source runs on tm1")
            .to_string();
        assert!(error.contains("tm1"), "{error}");

        // A TaskManager without a data address cannot be sent to.
        let mut no_address = all;
        for location in &mut no_address {
            if location.task_manager_id == "tm1" {
                location.data_address.clear();
            }
        }
        let error = exchange(&no_address)
            .output(channel(0, 1), &waker)
            .err()
            .expect("no Flight address for tm1")
            .to_string();
        assert!(
            error.contains("no Flight address for TaskManager tm1"),
            "{error}"
        );
    }
}
