//! Validation of a JobGraph, done once when it is built.

use std::collections::{HashSet, VecDeque};

use super::spec::{describe_columns, lookup, same_columns};
use super::{JobGraph, Partitioning};
use crate::connector::SourceSpec;
use crate::ids::VertexId;
use crate::{Error, Result};

pub(super) fn validate(graph: &JobGraph) -> Result<()> {
    let mut names = HashSet::new();
    for (index, vertex) in graph.vertices.iter().enumerate() {
        if vertex.id.0 as usize != index {
            return Err(Error::plan(
                &vertex.name,
                format!(
                    "vertex id {} does not match its position {index}",
                    vertex.id
                ),
            ));
        }
        if !names.insert(vertex.name.as_str()) {
            return Err(Error::plan(&vertex.name, "two vertices have this name"));
        }
        if vertex.parallelism == 0 {
            return Err(Error::plan(&vertex.name, "parallelism must be at least 1"));
        }
        if let super::OperatorSpec::Sort(sort) = &vertex.operator
            && sort.offset > 0
            && vertex.parallelism != 1
        {
            return Err(Error::plan(
                &vertex.name,
                "a sort with an OFFSET sees the whole input only at parallelism 1",
            ));
        }
        if vertex.max_parallelism < vertex.parallelism {
            return Err(Error::plan(
                &vertex.name,
                format!(
                    "max parallelism {} is below parallelism {}",
                    vertex.max_parallelism, vertex.parallelism
                ),
            ));
        }
    }
    let count = graph.vertices.len() as u32;
    for edge in &graph.edges {
        for end in [edge.source, edge.target] {
            if end.0 >= count {
                return Err(Error::plan(
                    "<graph>",
                    format!("an edge refers to vertex {end}, but the graph has {count} vertices"),
                ));
            }
        }
        let source = graph.vertex(edge.source);
        let target = graph.vertex(edge.target);
        match &edge.partitioning {
            Partitioning::Forward if source.parallelism != target.parallelism => {
                return Err(Error::plan(
                    &target.name,
                    format!(
                        "forward edge from '{}' (parallelism {}) to '{}' (parallelism {}) needs equal parallelism; use rebalance or hash",
                        source.name, source.parallelism, target.name, target.parallelism
                    ),
                ));
            }
            Partitioning::Hash { keys } => {
                if keys.is_empty() {
                    return Err(Error::plan(
                        &target.name,
                        "hash partitioning needs at least one key column",
                    ));
                }
                for key in keys {
                    lookup(&source.output_schema, key).map_err(|_| {
                        Error::plan(
                            &target.name,
                            format!(
                                "hash key column '{key}' is not produced by '{}' (its columns: {})",
                                source.name,
                                describe_columns(&source.output_schema)
                            ),
                        )
                    })?;
                }
            }
            Partitioning::Forward | Partitioning::Rebalance | Partitioning::Broadcast => {}
        }
    }

    for edge in &graph.edges {
        super::rank::check_input_edge(graph.vertex(edge.target), edge)?;
    }
    for vertex in &graph.vertices {
        check_source_predicate(graph, vertex)?;
    }

    let order = topological_order(graph)?;

    for id in order {
        let vertex = graph.vertex(id);
        let inputs = graph.inputs_of(id);
        // Input indexes must be dense: 0..n.
        let mut indexes: Vec<u32> = inputs.iter().map(|e| e.input_index).collect();
        indexes.dedup();
        if indexes
            .iter()
            .enumerate()
            .any(|(i, &index)| i as u32 != index)
        {
            return Err(Error::plan(
                &vertex.name,
                format!("input indexes must be 0, 1, …; found {indexes:?}"),
            ));
        }
        let arity = indexes.len();
        match vertex.operator.input_arity() {
            Some(expected) if expected != arity => {
                return Err(Error::plan(
                    &vertex.name,
                    format!(
                        "{} takes {expected} input(s), but {arity} are connected",
                        vertex.operator.kind_name()
                    ),
                ));
            }
            None if arity == 0 => {
                return Err(Error::plan(
                    &vertex.name,
                    format!("{} needs at least one input", vertex.operator.kind_name()),
                ));
            }
            _ => {}
        }
        // Several edges into the same input must agree on the schema.
        for pair in inputs.windows(2) {
            if pair[0].input_index == pair[1].input_index {
                let a = &graph.vertex(pair[0].source).output_schema;
                let b = &graph.vertex(pair[1].source).output_schema;
                if !same_columns(a, b) {
                    return Err(Error::plan(
                        &vertex.name,
                        format!(
                            "input {} receives ({}) from '{}' and ({}) from '{}'",
                            pair[0].input_index,
                            describe_columns(a),
                            graph.vertex(pair[0].source).name,
                            describe_columns(b),
                            graph.vertex(pair[1].source).name
                        ),
                    ));
                }
            }
        }
        let input_schemas = graph.input_schemas(id);
        let derived = vertex
            .operator
            .output_schema(&input_schemas)
            .map_err(|e| match e {
                Error::Expression { message } => Error::plan(&vertex.name, message),
                other => Error::plan(&vertex.name, other.to_string()),
            })?;
        if let Some(derived) = derived
            && !same_columns(&derived, &vertex.output_schema)
        {
            return Err(Error::plan(
                &vertex.name,
                format!(
                    "declared output schema ({}) does not match what the operator produces ({})",
                    describe_typed(&vertex.output_schema),
                    describe_typed(&derived)
                ),
            ));
        }
    }
    Ok(())
}

fn describe_typed(schema: &arrow::datatypes::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kahn's algorithm; a cycle is reported with a vertex on it.
pub(super) fn topological_order(graph: &JobGraph) -> Result<Vec<VertexId>> {
    let n = graph.vertices.len();
    let mut in_degree = vec![0usize; n];
    for edge in &graph.edges {
        in_degree[edge.target.0 as usize] += 1;
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| in_degree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_front() {
        order.push(VertexId(i as u32));
        for edge in graph.edges.iter().filter(|e| e.source.0 as usize == i) {
            let target = edge.target.0 as usize;
            in_degree[target] -= 1;
            if in_degree[target] == 0 {
                ready.push_back(target);
            }
        }
    }
    if order.len() != n {
        let on_cycle = (0..n)
            .find(|&i| in_degree[i] > 0)
            .expect("some vertex is left when the order is short");
        return Err(Error::plan(
            &graph.vertices[on_cycle].name,
            "the graph has a cycle through this vertex",
        ));
    }
    Ok(order)
}

/// A file source's pushed predicate only spares reading rows that the filters after it drop:
/// every vertex the source feeds must be a filter whose conjuncts include the predicate's,
/// or rows the predicate rules out would be missing downstream. A source reading strings as
/// dictionaries must feed one filter, chained to it (the filter decodes them).
fn check_source_predicate(graph: &JobGraph, vertex: &super::Vertex) -> Result<()> {
    let super::OperatorSpec::Source {
        connector: SourceSpec::Filesystem(spec),
        ..
    } = &vertex.operator
    else {
        return Ok(());
    };
    if spec.dictionaries {
        for edge in graph.outputs_of(vertex.id) {
            let target = graph.vertex(edge.target);
            let chained = edge.partitioning == Partitioning::Forward
                && target.parallelism == vertex.parallelism
                && graph.outputs_of(vertex.id).len() == 1
                && graph.inputs_of(target.id).len() == 1;
            if !chained || !matches!(target.operator, super::OperatorSpec::Filter { .. }) {
                return Err(Error::plan(
                    &vertex.name,
                    format!(
                        "the source reads strings as dictionaries, which only a filter chained \
                         to it decodes, but '{}' reads it",
                        target.name
                    ),
                ));
            }
        }
    }
    let Some(pushed) = &spec.predicate else {
        return Ok(());
    };
    let conjuncts = pushed.conjuncts();
    for edge in graph.outputs_of(vertex.id) {
        let target = graph.vertex(edge.target);
        if let super::OperatorSpec::Filter { predicate } = &target.operator
            && conjuncts.iter().all(|c| predicate.conjuncts().contains(c))
        {
            continue;
        }
        return Err(Error::plan(
            &vertex.name,
            format!(
                "the source's predicate {pushed} only prunes what a filter drops, but '{}' \
                 reads the source without applying it",
                target.name
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

    use super::super::{
        AggregateCall, AggregateFunction, Edge, EmitMode, JobGraph, KeyedAggregateSpec,
        OperatorSpec, Partitioning, Vertex,
    };
    use std::collections::BTreeMap;

    use crate::connector::{FileFormat, FileSourceSpec, MemorySource, SinkSpec, SourceSpec};
    use crate::expr::{Expr, col, lit};
    use crate::ids::VertexId;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, false),
            Field::new("price", DataType::Int64, false),
        ]))
    }

    fn vertex(
        id: u32,
        name: &str,
        operator: OperatorSpec,
        schema: SchemaRef,
        parallelism: u32,
    ) -> Vertex {
        Vertex {
            id: VertexId(id),
            name: name.into(),
            operator,
            output_schema: schema,
            parallelism,
            max_parallelism: 128,
            read_first: None,
        }
    }

    fn source(id: u32, parallelism: u32) -> Vertex {
        let spec = SourceSpec::Memory(MemorySource::new(schema(), vec![]).unwrap());
        vertex(
            id,
            "bids",
            OperatorSpec::Source {
                connector: spec,
                watermark: None,
            },
            schema(),
            parallelism,
        )
    }

    fn sink(id: u32, parallelism: u32) -> Vertex {
        let spec = SinkSpec::Blackhole;
        vertex(
            id,
            "sink",
            OperatorSpec::Sink { connector: spec },
            schema(),
            parallelism,
        )
    }

    fn edge(source: u32, target: u32, partitioning: Partitioning) -> Edge {
        Edge {
            source: VertexId(source),
            target: VertexId(target),
            input_index: 0,
            partitioning,
        }
    }

    fn error_of(vertices: Vec<Vertex>, edges: Vec<Edge>) -> String {
        JobGraph::new("test", vertices, edges)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_valid_graph_builds_and_round_trips() {
        let graph = JobGraph::new(
            "ok",
            vec![source(0, 2), sink(1, 2)],
            vec![edge(0, 1, Partitioning::Forward)],
        )
        .unwrap();
        let back = JobGraph::from_json(&graph.to_json().unwrap()).unwrap();
        assert_eq!(back.vertices().len(), 2);
        assert_eq!(back.edges(), graph.edges());
    }

    fn parquet_source(predicate: Option<Expr>) -> Vertex {
        let spec = SourceSpec::Filesystem(FileSourceSpec {
            path: "bids".into(),
            format: FileFormat::Parquet,
            schema: schema(),
            options: BTreeMap::new(),
            partition_keys: Vec::new(),
            predicate,
            dictionaries: false,
        });
        vertex(
            0,
            "bids",
            OperatorSpec::Source {
                connector: spec,
                watermark: None,
            },
            schema(),
            1,
        )
    }

    fn filter(predicate: Expr) -> Vertex {
        vertex(1, "filter", OperatorSpec::Filter { predicate }, schema(), 1)
    }

    #[test]
    fn a_pushed_predicate_round_trips_and_filters_after_the_source_apply_it() {
        let pushed = col("price").gt(lit(10_i64));
        let forward = |source, target| edge(source, target, Partitioning::Forward);
        let graph = JobGraph::new(
            "pushed",
            vec![
                parquet_source(Some(pushed.clone())),
                filter(pushed.clone().and(col("auction").eq(col("price")))),
                sink(2, 1),
            ],
            vec![forward(0, 1), forward(1, 2)],
        )
        .unwrap();
        let back = JobGraph::from_json(&graph.to_json().unwrap()).unwrap();
        assert_eq!(back.vertices()[0].operator, graph.vertices()[0].operator);
        // Without a predicate, a source's JSON is what it was before predicates existed.
        let plain = serde_json::to_string(&parquet_source(None).operator).unwrap();
        assert!(!plain.contains("predicate"), "{plain}");

        // A filter without the pushed conjunct, or an operator other than a filter, would
        // miss the rows the predicate prunes.
        let message = error_of(
            vec![
                parquet_source(Some(pushed.clone())),
                filter(col("auction").gt(lit(1_i64))),
            ],
            vec![forward(0, 1)],
        );
        assert!(message.contains("(price > 10) only prunes"), "{message}");
        let message = error_of(
            vec![parquet_source(Some(pushed)), sink(1, 1)],
            vec![forward(0, 1)],
        );
        assert!(
            message.contains("'sink' reads the source without applying it"),
            "{message}"
        );
    }

    /// Only a filter chained to it may read a source that reads strings as dictionaries.
    #[test]
    fn a_dictionary_source_feeds_one_chained_filter() {
        let with_dictionaries = || {
            let mut vertex = parquet_source(None);
            if let OperatorSpec::Source {
                connector: SourceSpec::Filesystem(spec),
                ..
            } = &mut vertex.operator
            {
                spec.dictionaries = true;
            }
            vertex
        };
        let forward = |source, target| edge(source, target, Partitioning::Forward);
        let predicate = col("price").gt(lit(10_i64));
        JobGraph::new(
            "dictionaries",
            vec![with_dictionaries(), filter(predicate.clone()), sink(2, 1)],
            vec![forward(0, 1), forward(1, 2)],
        )
        .unwrap();
        let message = error_of(vec![with_dictionaries(), sink(1, 1)], vec![forward(0, 1)]);
        assert!(
            message.contains("only a filter chained to it decodes, but 'sink' reads it"),
            "{message}"
        );
        let message = error_of(
            vec![with_dictionaries(), filter(predicate)],
            vec![edge(0, 1, Partitioning::Rebalance)],
        );
        assert!(message.contains("but 'filter' reads it"), "{message}");
    }

    #[test]
    fn forward_between_unequal_parallelism_names_both_vertices() {
        let message = error_of(
            vec![source(0, 2), sink(1, 3)],
            vec![edge(0, 1, Partitioning::Forward)],
        );
        assert!(message.contains("vertex 'sink'"), "{message}");
        assert!(message.contains("'bids' (parallelism 2)"), "{message}");
    }

    #[test]
    fn unknown_hash_key_names_the_column() {
        let message = error_of(
            vec![source(0, 1), sink(1, 2)],
            vec![edge(0, 1, Partitioning::hash(["bidder"]))],
        );
        assert!(message.contains("hash key column 'bidder'"), "{message}");
        assert!(message.contains("auction, price"), "{message}");
    }

    #[test]
    fn cycles_are_rejected() {
        let union = |id| vertex(id, &format!("u{id}"), OperatorSpec::Union, schema(), 1);
        let message = error_of(
            vec![source(0, 1), union(1), union(2)],
            vec![
                edge(0, 1, Partitioning::Forward),
                edge(1, 2, Partitioning::Forward),
                edge(2, 1, Partitioning::Forward),
            ],
        );
        assert!(message.contains("cycle"), "{message}");
    }

    #[test]
    fn declared_schema_must_match_the_operator() {
        let spec = KeyedAggregateSpec {
            keys: vec!["auction".into()],
            aggregates: vec![AggregateCall {
                function: AggregateFunction::Sum,
                input: Some("price".into()),
                output: "total".into(),
            }],
            emit: EmitMode::Final,
            default_group: None,
            phase: Default::default(),
        };
        let message = error_of(
            vec![
                source(0, 1),
                vertex(1, "agg", OperatorSpec::KeyedAggregate(spec), schema(), 1),
            ],
            vec![edge(0, 1, Partitioning::hash(["auction"]))],
        );
        assert!(message.contains("vertex 'agg'"), "{message}");
        assert!(message.contains("total Int64"), "{message}");
    }

    #[test]
    fn aggregate_over_unknown_column_names_it() {
        let spec = KeyedAggregateSpec {
            keys: vec!["auction".into()],
            aggregates: vec![AggregateCall {
                function: AggregateFunction::Max,
                input: Some("pricee".into()),
                output: "m".into(),
            }],
            emit: EmitMode::Final,
            default_group: None,
            phase: Default::default(),
        };
        let message = error_of(
            vec![
                source(0, 1),
                vertex(1, "agg", OperatorSpec::KeyedAggregate(spec), schema(), 1),
            ],
            vec![edge(0, 1, Partitioning::hash(["auction"]))],
        );
        assert!(message.contains("unknown column 'pricee'"), "{message}");
        assert!(message.contains("vertex 'agg'"), "{message}");
    }

    #[test]
    fn sinks_need_exactly_one_input() {
        let message = error_of(vec![source(0, 1), sink(1, 1)], vec![]);
        assert!(
            message.contains("takes 1 input(s), but 0 are connected"),
            "{message}"
        );
    }
}
