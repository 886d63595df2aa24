//! The ExecutionGraph: a JobGraph cut into chains, with one task per chain per parallel
//! instance, each placed into a slot.
//!
//! Chaining: an edge is chained when it is a forward edge between equal parallelism, it is the
//! only output of its source and the only input of its target. Chained operators run in one
//! task as direct calls; every other edge becomes channels of the exchange.
//!
//! Slot sharing: subtask `i` of every chain goes to slot `i mod slots`, so one slot runs one
//! parallel slice of the whole pipeline (as Flink's default slot-sharing group).
//!
//! Stages: in a batch job whose exchanges are blocking ([`ExecutionGraph::with_blocking_exchanges`])
//! every chain is a stage of its own (Flink's pipelined region when all exchanges block). A
//! stage starts once every stage it reads from has finished, and a failed stage runs again
//! alone, from its inputs' materialised partitions.

use crate::graph::{JobGraph, OperatorSpec, Partitioning};
use crate::ids::{SlotId, SubtaskIndex, VertexId};

/// Consecutive vertices that run in one task.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Head first.
    pub vertices: Vec<VertexId>,
    pub parallelism: u32,
}

/// One task: a chain's parallel instance in a slot.
#[derive(Debug, Clone, Copy)]
pub struct TaskPlacement {
    pub chain: usize,
    pub subtask: SubtaskIndex,
    pub slot: SlotId,
}

#[derive(Debug, Clone)]
pub struct ExecutionGraph {
    pub chains: Vec<Chain>,
    /// Chain index of every vertex.
    pub chain_of: Vec<usize>,
    /// Indices (into the JobGraph's edges) of the edges that cross chains.
    pub exchange_edges: Vec<usize>,
    pub tasks: Vec<TaskPlacement>,
    pub slots: u32,
    /// Per JobGraph edge: whether it is a blocking exchange. All false unless
    /// [`ExecutionGraph::with_blocking_exchanges`] was called.
    pub blocking: Vec<bool>,
}

impl ExecutionGraph {
    pub fn new(graph: &JobGraph, slots: u32) -> Self {
        let slots = slots.max(1);
        let edges = graph.edges();
        let chained: Vec<bool> = edges
            .iter()
            .map(|edge| {
                let source = graph.vertex(edge.source);
                let target = graph.vertex(edge.target);
                edge.partitioning == Partitioning::Forward
                    && source.parallelism == target.parallelism
                    && graph.outputs_of(edge.source).len() == 1
                    && graph.inputs_of(edge.target).len() == 1
                    && !matches!(target.operator, OperatorSpec::Source { .. })
            })
            .collect();

        let mut chain_of = vec![usize::MAX; graph.vertices().len()];
        let mut chains = Vec::new();
        for id in graph.topological_order() {
            let chained_input = edges
                .iter()
                .zip(&chained)
                .find(|(edge, is_chained)| edge.target == id && **is_chained);
            match chained_input {
                Some((edge, _)) => {
                    let chain = chain_of[edge.source.0 as usize];
                    chain_of[id.0 as usize] = chain;
                    let chain: &mut Chain = &mut chains[chain];
                    chain.vertices.push(id);
                }
                None => {
                    chain_of[id.0 as usize] = chains.len();
                    chains.push(Chain {
                        vertices: vec![id],
                        parallelism: graph.vertex(id).parallelism,
                    });
                }
            }
        }
        let exchange_edges = chained
            .iter()
            .enumerate()
            .filter(|(_, chained)| !**chained)
            .map(|(i, _)| i)
            .collect();
        let mut tasks = Vec::new();
        for (index, chain) in chains.iter().enumerate() {
            for subtask in 0..chain.parallelism {
                tasks.push(TaskPlacement {
                    chain: index,
                    subtask: SubtaskIndex(subtask),
                    slot: SlotId(subtask % slots),
                });
            }
        }
        ExecutionGraph {
            chains,
            chain_of,
            exchange_edges,
            tasks,
            slots,
            blocking: vec![false; edges.len()],
        }
    }

    /// Makes every exchange edge blocking: the job then runs stage by stage, a chain per stage.
    pub fn with_blocking_exchanges(mut self) -> Self {
        for &edge in &self.exchange_edges {
            self.blocking[edge] = true;
        }
        self
    }

    /// Whether the job runs stage by stage (some exchange is blocking).
    pub fn is_staged(&self) -> bool {
        self.blocking.iter().any(|&b| b)
    }

    /// The chains whose blocking output `chain` reads: the stages that must finish before it
    /// starts.
    pub fn upstream_stages(&self, graph: &JobGraph, chain: usize) -> Vec<usize> {
        let head = self.chains[chain].vertices[0];
        let mut upstream: Vec<usize> = graph
            .edges()
            .iter()
            .enumerate()
            .filter(|(index, edge)| self.blocking[*index] && edge.target == head)
            .map(|(_, edge)| self.chain_of[edge.source.0 as usize])
            .collect();
        upstream.sort_unstable();
        upstream.dedup();
        upstream
    }

    /// "a -> b -> c": the chain's vertex names.
    pub fn chain_name(&self, graph: &JobGraph, chain: usize) -> String {
        self.chains[chain]
            .vertices
            .iter()
            .map(|&v| graph.vertex(v).name.as_str())
            .collect::<Vec<_>>()
            .join(" -> ")
    }
}
