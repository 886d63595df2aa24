//! Named user functions: operators that a JobGraph refers to by a stable name and a JSON
//! config, so the graph can travel to a cluster without the code.
//!
//! A closure given to the DataStream API exists only in the program that built the graph; a
//! cluster cannot run it. A user function instead is compiled into every binary that may run
//! it (as Flink needs the user jar on the TaskManagers' classpath): the program registers it
//! in [`UserFunctions`] under a name, the graph's vertex says `User { function, config }`, and
//! a TaskManager started from a binary with the same registry builds one operator per subtask
//! from the name and the config. A process whose registry lacks the name refuses the vertex
//! with an error that names the function ([`UserFunctions::missing`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::{Operator, OperatorContext};
use crate::Result;
use crate::api::BatchFn;
use crate::graph::{JobGraph, OperatorSpec};

/// Creates a user function's operator for one subtask from the vertex's config.
///
/// Called on the deploying thread (not a slot thread), once per subtask at deployment and at
/// every restart; an error fails the deployment, so a bad config is reported before any data
/// flows.
pub trait UserFunctionFactory: Send + Sync {
    fn create(&self, config: &Value, ctx: &OperatorContext) -> Result<Box<dyn Operator>>;
}

impl<F> UserFunctionFactory for F
where
    F: Fn(&Value, &OperatorContext) -> Result<Box<dyn Operator>> + Send + Sync,
{
    fn create(&self, config: &Value, ctx: &OperatorContext) -> Result<Box<dyn Operator>> {
        self(config, ctx)
    }
}

/// The user functions a binary knows, by name. Cheap to clone.
///
/// ```
/// use sluice_engine::api::UserFunctions;
///
/// let functions = UserFunctions::new().map_batches("keep-first-row", |_config| {
///     Ok(|batch: &arrow::record_batch::RecordBatch| Ok(batch.slice(0, batch.num_rows().min(1))))
/// });
/// assert!(functions.contains("keep-first-row"));
/// ```
#[derive(Clone, Default)]
pub struct UserFunctions {
    functions: BTreeMap<String, Arc<dyn UserFunctionFactory>>,
}

/// A vertex whose user function a registry lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFunction {
    pub vertex: String,
    pub function: String,
}

impl fmt::Display for MissingFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' (vertex '{}')", self.function, self.vertex)
    }
}

impl fmt::Debug for UserFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.functions.keys()).finish()
    }
}

impl UserFunctions {
    pub fn new() -> Self {
        UserFunctions::default()
    }

    /// Registers an operator factory under `name` (replacing one of the same name).
    pub fn register_operator(
        mut self,
        name: impl Into<String>,
        factory: impl UserFunctionFactory + 'static,
    ) -> Self {
        self.functions.insert(name.into(), Arc::new(factory));
        self
    }

    /// Registers a batch function under `name`: `make` turns the vertex's config into the
    /// function applied to every batch (once per subtask, so per-subtask state may live in
    /// the returned closure).
    pub fn map_batches<M, F>(self, name: impl Into<String>, make: M) -> Self
    where
        M: Fn(&Value) -> Result<F> + Send + Sync + 'static,
        F: Fn(&RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
    {
        self.register_operator(name, move |config: &Value, _ctx: &OperatorContext| {
            let function = make(config)?;
            Ok(Box::new(BatchFn::new(Arc::new(function))) as Box<dyn Operator>)
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn UserFunctionFactory>> {
        self.functions.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// The registered names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// Adds every function of `other` (its entries win on equal names).
    pub fn extend(&mut self, other: &UserFunctions) {
        for (name, factory) in &other.functions {
            self.functions.insert(name.clone(), factory.clone());
        }
    }

    /// The user-function vertices of `graph` this registry cannot build, in vertex order: a
    /// process checks them before deploying so that it fails at once, naming them.
    pub fn missing(&self, graph: &JobGraph) -> Vec<MissingFunction> {
        graph
            .vertices()
            .iter()
            .filter_map(|vertex| {
                let OperatorSpec::User { function, .. } = &vertex.operator else {
                    return None;
                };
                (!self.contains(function)).then(|| MissingFunction {
                    vertex: vertex.name.clone(),
                    function: function.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use serde_json::json;

    use super::*;
    use crate::api::StreamEnvironment;

    fn functions() -> UserFunctions {
        UserFunctions::new().map_batches("add", |config: &Value| {
            let amount = config["amount"]
                .as_i64()
                .ok_or_else(|| crate::Error::plan("add", "config needs 'amount'"))?;
            Ok(move |batch: &RecordBatch| {
                let column = arrow::compute::kernels::numeric::add(
                    batch.column(0),
                    &Int64Array::new_scalar(amount),
                )
                .map_err(|e| crate::Error::plan("add", e.to_string()))?;
                RecordBatch::try_new(batch.schema(), vec![column])
                    .map_err(|e| crate::Error::plan("add", e.to_string()))
            })
        })
    }

    fn job(env: &StreamEnvironment, config: Value) -> crate::Result<()> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .expect("one Int64 column");
        env.from_batches("numbers", schema.clone(), vec![batch])?
            .user_function("add", config, schema)?
            .collect("out")
    }

    fn values(output: &crate::api::LocalJobOutput) -> Vec<i64> {
        let mut values: Vec<i64> = output
            .collected
            .batches("out")
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("Int64")
                    .values()
                    .to_vec()
            })
            .collect();
        values.sort_unstable();
        values
    }

    #[test]
    fn a_named_function_runs_locally_with_its_config_and_travels_by_name() {
        let env = StreamEnvironment::new("named").with_user_functions(&functions());
        job(&env, json!({ "amount": 10 })).expect("valid job");
        let (graph, _) = env.build().expect("valid graph");
        let json = graph.to_json().expect("serialisable");
        let back = JobGraph::from_json(&json).expect("round trip");
        let user = back
            .vertices()
            .iter()
            .find(|v| v.name == "add")
            .expect("the function's vertex");
        assert_eq!(
            user.operator,
            OperatorSpec::User {
                function: "add".into(),
                config: json!({ "amount": 10 })
            }
        );
        assert_eq!(functions().missing(&back), vec![]);
        assert_eq!(
            UserFunctions::new().missing(&back),
            vec![MissingFunction {
                vertex: "add".into(),
                function: "add".into()
            }]
        );
        assert_eq!(
            values(&env.execute_local().expect("runs")),
            vec![11, 12, 13]
        );
    }

    #[test]
    fn an_unregistered_function_or_a_bad_config_fails_naming_it() {
        let env = StreamEnvironment::new("unregistered");
        job(&env, json!({ "amount": 1 })).expect("valid job");
        let error = env.execute_local().expect_err("no registry").to_string();
        assert!(
            error.contains("user function 'add' is not registered"),
            "{error}"
        );

        let env = StreamEnvironment::new("bad-config").with_user_functions(&functions());
        job(&env, json!({})).expect("valid job");
        let error = env.execute_local().expect_err("bad config").to_string();
        assert!(error.contains("config needs 'amount'"), "{error}");
    }
}
