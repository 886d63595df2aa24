//! Operator descriptions: the serialisable "kind + config" of a vertex.
//!
//! A spec knows the schema it produces from the schemas it consumes
//! ([`OperatorSpec::output_schema`]); validation uses that to type-check a whole graph before
//! anything runs, and the runtime's operator registry turns a spec into one operator per subtask.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use super::JoinSpec;
use crate::connector::{SinkSpec, SourceSpec};
use crate::element::ROW_KIND_COLUMN;
use crate::expr::{Expr, ScalarValue};
use crate::time::WatermarkStrategy;
use crate::{Error, Result};

/// What a vertex does, with its configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OperatorSpec {
    /// Reads from a connector. No inputs. With a watermark strategy, the source emits
    /// watermarks derived from an event-time column.
    Source {
        connector: SourceSpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watermark: Option<WatermarkStrategy>,
    },
    /// Keeps the rows for which `predicate` is true (NULL counts as false).
    Filter { predicate: Expr },
    /// Computes one output column per expression, named by the first element. With a
    /// watermark strategy, the operator is a watermark assigner as well (Flink's
    /// `WatermarkAssigner` after a computed rowtime column): it emits watermarks derived from an
    /// output column and drops upstream watermarks other than the final `MAX`.
    Project {
        columns: Vec<(String, Expr)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watermark: Option<WatermarkStrategy>,
    },
    /// Merges all inputs (same schema) into one stream.
    Union,
    /// Groups by key columns and aggregates; the input must be hash-partitioned on the keys.
    KeyedAggregate(KeyedAggregateSpec),
    /// Aggregates per key and time window (tumbling, hopping, cumulating, session); the input
    /// must be hash-partitioned on the keys.
    WindowAggregate(super::window::WindowAggregateSpec),
    /// Writes to a connector. Produces nothing.
    Sink { connector: SinkSpec },
    /// Joins input 0 (left) with input 1 (right) on equal keys; see [`JoinSpec`].
    Join(JoinSpec),
    /// Joins the input with a bounded table each subtask loads; see [`super::LookupJoinSpec`].
    LookupJoin(super::LookupJoinSpec),
    /// Top-N / deduplication per partition (`ROW_NUMBER() … WHERE rn <= N`); the input must be
    /// hash-partitioned on the partition keys. See [`super::RankSpec`].
    Rank(super::RankSpec),
    /// Sorts (ORDER BY), skips (OFFSET) and limits (LIMIT/FETCH) rows; see [`super::SortSpec`].
    Sort(super::SortSpec),
    /// A user operator registered under `name` in the runtime's operator registry (the
    /// DataStream API's batch functions). Its output schema is the vertex's declared schema.
    Custom { name: String },
    /// A named user function ([`crate::api::UserFunctions`]): every process that runs the
    /// vertex must have registered `function`; `config` is handed to its factory. Unlike
    /// `Custom`, the graph alone names the code, so it can run on a cluster whose
    /// TaskManagers' binary registers the function. Its output schema is the vertex's declared
    /// schema.
    User {
        function: String,
        #[serde(default)]
        config: serde_json::Value,
    },
}

impl OperatorSpec {
    /// A short name for the operator kind (metrics, logs, the dashboard).
    pub fn kind_name(&self) -> &'static str {
        match self {
            OperatorSpec::Source { .. } => "Source",
            OperatorSpec::Filter { .. } => "Filter",
            OperatorSpec::Project { .. } => "Project",
            OperatorSpec::Union => "Union",
            OperatorSpec::KeyedAggregate(_) => "KeyedAggregate",
            OperatorSpec::WindowAggregate(_) => "WindowAggregate",
            OperatorSpec::Sink { .. } => "Sink",
            OperatorSpec::Join(spec) => spec.kind_name(),
            OperatorSpec::LookupJoin(_) => "LookupJoin",
            OperatorSpec::Rank(_) => "Rank",
            OperatorSpec::Sort(_) => "Sort",
            OperatorSpec::Custom { .. } => "Custom",
            OperatorSpec::User { .. } => "User",
        }
    }

    /// Whether the operator holds its input until it ends and so takes a share of the
    /// managed memory, spilling beyond it (see [`crate::spill`]): batch joins, final
    /// aggregations and full sorts.
    pub fn uses_managed_memory(&self) -> bool {
        match self {
            OperatorSpec::Join(spec) => spec.is_batch(),
            OperatorSpec::KeyedAggregate(spec) => {
                spec.emit == EmitMode::Final && spec.phase != AggregatePhase::Partial
            }
            OperatorSpec::Sort(spec) => {
                !spec.keys.is_empty() && spec.fetch.is_none() && !spec.event_time
            }
            _ => false,
        }
    }

    /// How many inputs the operator takes: `Some(n)` when fixed, `None` for any number ≥ 1.
    pub fn input_arity(&self) -> Option<usize> {
        match self {
            OperatorSpec::Source { .. } => Some(0),
            OperatorSpec::Filter { .. }
            | OperatorSpec::Project { .. }
            | OperatorSpec::KeyedAggregate(_)
            | OperatorSpec::WindowAggregate(_)
            | OperatorSpec::Rank(_)
            | OperatorSpec::Sink { .. }
            | OperatorSpec::Sort(_)
            | OperatorSpec::LookupJoin(_) => Some(1),
            OperatorSpec::Join(_) => Some(2),
            OperatorSpec::Union | OperatorSpec::Custom { .. } | OperatorSpec::User { .. } => None,
        }
    }

    /// The schema this operator produces from `inputs` (one schema per input index), or
    /// `None` when only the vertex's declared schema can say (custom operators). Type errors
    /// name the offending column; the caller adds the vertex.
    pub fn output_schema(&self, inputs: &[SchemaRef]) -> Result<Option<SchemaRef>> {
        let schema = match self {
            OperatorSpec::Source {
                connector,
                watermark,
            } => {
                let schema = connector.schema()?;
                if let Some(strategy) = watermark {
                    strategy.validate(&schema)?;
                }
                schema
            }
            OperatorSpec::Filter { predicate } => {
                let input = &inputs[0];
                let resolved = predicate.resolve(input)?;
                if resolved.data_type() != &DataType::Boolean {
                    return Err(Error::expr(format!(
                        "filter predicate must be BOOLEAN, found {}",
                        resolved.data_type()
                    )));
                }
                input.clone()
            }
            OperatorSpec::Project { columns, watermark } => {
                let input = &inputs[0];
                let mut fields = Vec::with_capacity(columns.len());
                for (name, expr) in columns {
                    let resolved = expr.resolve(input)?;
                    fields.push(Field::new(
                        name,
                        resolved.data_type().clone(),
                        resolved.nullable(),
                    ));
                }
                let schema = Arc::new(Schema::new(fields));
                if let Some(strategy) = watermark {
                    strategy.validate(&schema)?;
                }
                schema
            }
            OperatorSpec::Union => {
                let first = &inputs[0];
                for (index, other) in inputs.iter().enumerate().skip(1) {
                    if !same_columns(first, other) {
                        return Err(Error::expr(format!(
                            "union input {index} has columns ({}) but input 0 has ({})",
                            describe_columns(other),
                            describe_columns(first)
                        )));
                    }
                }
                first.clone()
            }
            OperatorSpec::KeyedAggregate(spec) => spec.output_schema(&inputs[0])?,
            OperatorSpec::WindowAggregate(spec) => spec.output_schema(&inputs[0])?,
            OperatorSpec::Sink { connector } => {
                connector.validate(&inputs[0])?;
                inputs[0].clone()
            }
            OperatorSpec::Join(spec) => spec.output_schema(&inputs[0], &inputs[1])?,
            OperatorSpec::LookupJoin(spec) => spec.output_schema(&inputs[0])?,
            OperatorSpec::Rank(spec) => spec.output_schema(&inputs[0])?,
            OperatorSpec::Sort(spec) => spec.output_schema(&inputs[0])?,
            OperatorSpec::Custom { .. } | OperatorSpec::User { .. } => return Ok(None),
        };
        Ok(Some(schema))
    }
}

/// The configuration of a keyed (GROUP BY) aggregation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedAggregateSpec {
    /// Grouping columns; they come first in the output, in this order.
    pub keys: Vec<String>,
    pub aggregates: Vec<AggregateCall>,
    pub emit: EmitMode,
    /// The key of a group that exists without any input, one value per key column: an
    /// aggregation without GROUP BY is keyed by a constant, and over no rows SQL's batch mode
    /// still gives it one row (`COUNT(*)` 0, the others NULL). With `Final` emission the
    /// subtask owning this key's key group emits that row at end of input when no input row
    /// created the group; `Changelog` emission ignores it, as Flink's streaming mode emits
    /// nothing until a row arrives. `None` for GROUP BY aggregations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_group: Option<Vec<ScalarValue>>,
    /// Which half of a two-phase aggregation this is, if any.
    #[serde(default, skip_serializing_if = "AggregatePhase::is_single")]
    pub phase: AggregatePhase,
}

/// The phases of an aggregation split around its exchange (Flink's `TWO_PHASE` strategy): a
/// partial aggregation before the hash exchange folds each subtask's rows into one row per
/// group, so the exchange carries those instead of every input row; the final aggregation
/// after it merges them. Batch mode plans it where every function merges (COUNT, SUM, AVG,
/// MIN, MAX); see `table.optimizer.agg-phase-strategy` in [`crate::sql`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregatePhase {
    /// Input rows in, results out.
    #[default]
    Single,
    /// Input rows in; out, each group's key columns and partial state (columns named
    /// [`partial_state_column`]), at end of input and whenever the groups outgrow a bound.
    /// Emits no default group.
    Partial,
    /// The rows of a `Partial` phase in, results out. `input_types`: per aggregate, the type
    /// of the column the partial phase aggregated (`None` for `COUNT(*)`).
    Final { input_types: Vec<Option<DataType>> },
}

impl AggregatePhase {
    pub fn is_single(&self) -> bool {
        matches!(self, AggregatePhase::Single)
    }
}

/// The name of partial state column `index` of the aggregate whose output is `output`.
pub fn partial_state_column(output: &str, index: usize) -> String {
    format!("{output}$state{index}")
}

/// One aggregate in a [`KeyedAggregateSpec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateCall {
    pub function: AggregateFunction,
    /// The aggregated column; `None` only for `COUNT(*)`.
    pub input: Option<String>,
    /// The output column's name.
    pub output: String,
}

/// The built-in aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFunction {
    /// `COUNT(*)` when the input is `None`, else `COUNT(col)` (non-null values).
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// `COUNT(DISTINCT col)`: distinct non-null values.
    CountDistinct,
    /// The first non-null value in processing order (per window: the earliest slice first).
    FirstValue,
    /// The last non-null value in processing order.
    LastValue,
}

/// When a keyed aggregation emits results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmitMode {
    /// One row per group at end of input (batch semantics; also what a bounded stream needs).
    Final,
    /// After every input batch, an update per changed group: `+I` for a new group, `-U` of the
    /// old row and `+U` of the new one otherwise, in a leading `_row_kind` column (Flink's
    /// changelog mode for non-windowed aggregates).
    Changelog,
}

impl AggregateFunction {
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunction::Count => "COUNT",
            AggregateFunction::Sum => "SUM",
            AggregateFunction::Min => "MIN",
            AggregateFunction::Max => "MAX",
            AggregateFunction::Avg => "AVG",
            AggregateFunction::CountDistinct => "COUNT DISTINCT",
            AggregateFunction::FirstValue => "FIRST_VALUE",
            AggregateFunction::LastValue => "LAST_VALUE",
        }
    }

    /// Whether the result can be NULL (every function but the counts, which start at 0).
    pub fn is_nullable(self) -> bool {
        !matches!(
            self,
            AggregateFunction::Count | AggregateFunction::CountDistinct
        )
    }

    /// The result type for an input of type `input` (`None` for `COUNT(*)`).
    pub fn result_type(self, input: Option<&DataType>) -> Result<DataType> {
        use DataType::*;
        let Some(input) = input else {
            return match self {
                AggregateFunction::Count => Ok(Int64),
                other => Err(Error::expr(format!("{}(*) is not defined", other.name()))),
            };
        };
        let unsupported =
            || Error::expr(format!("{} is not defined for type {input}", self.name()));
        match self {
            AggregateFunction::Count | AggregateFunction::CountDistinct => Ok(Int64),
            AggregateFunction::FirstValue | AggregateFunction::LastValue => match input {
                Int8
                | Int16
                | Int32
                | Int64
                | UInt8
                | UInt16
                | UInt32
                | UInt64
                | Float32
                | Float64
                | Utf8
                | Date32
                | Timestamp(_, _)
                | Decimal128(_, _) => Ok(input.clone()),
                _ => Err(unsupported()),
            },
            AggregateFunction::Sum => match input {
                Int8 | Int16 | Int32 | Int64 => Ok(Int64),
                UInt8 | UInt16 | UInt32 | UInt64 => Ok(UInt64),
                Float32 | Float64 => Ok(Float64),
                Decimal128(_, scale) => Ok(Decimal128(38, *scale)),
                _ => Err(unsupported()),
            },
            AggregateFunction::Avg => match input {
                Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float32
                | Float64 => Ok(Float64),
                // Flink's: the DECIMAL(38, s) sum divided by the BIGINT count.
                Decimal128(_, scale) => Ok(Decimal128(38, (*scale).max(6))),
                _ => Err(unsupported()),
            },
            AggregateFunction::Min | AggregateFunction::Max => match input {
                Int8
                | Int16
                | Int32
                | Int64
                | UInt8
                | UInt16
                | UInt32
                | UInt64
                | Float32
                | Float64
                | Utf8
                | Date32
                | Timestamp(_, _)
                | Decimal128(_, _)
                | Boolean => Ok(input.clone()),
                _ => Err(unsupported()),
            },
        }
    }
}

impl KeyedAggregateSpec {
    pub fn output_schema(&self, input: &Schema) -> Result<SchemaRef> {
        let mut fields = Vec::with_capacity(self.keys.len() + self.aggregates.len() + 1);
        if self.emit == EmitMode::Changelog {
            fields.push(Field::new(ROW_KIND_COLUMN, DataType::Int8, false));
        }
        for key in &self.keys {
            let field = lookup(input, key)?;
            fields.push(field.clone());
        }
        for (i, call) in self.aggregates.iter().enumerate() {
            let input_type = match (&self.phase, &call.input) {
                (AggregatePhase::Final { input_types }, _) => input_types
                    .get(i)
                    .ok_or_else(|| {
                        Error::expr(format!(
                            "final aggregation: no input type for aggregate '{}'",
                            call.output
                        ))
                    })?
                    .clone(),
                (_, Some(column)) => Some(lookup(input, column)?.data_type().clone()),
                (_, None) => None,
            };
            let described = |e: Error| match e {
                Error::Expression { message } => Error::expr(format!(
                    "aggregate '{}' on column '{}': {message}",
                    call.output,
                    call.input.as_deref().unwrap_or("*")
                )),
                other => other,
            };
            if self.phase == AggregatePhase::Partial {
                let state = crate::operator::partial_state_types(call, input_type.as_ref())
                    .map_err(described)?;
                for (j, data_type) in state.into_iter().enumerate() {
                    let name = partial_state_column(&call.output, j);
                    fields.push(Field::new(name, data_type, true));
                }
                continue;
            }
            let result = call
                .function
                .result_type(input_type.as_ref())
                .map_err(described)?;
            let nullable = call.function.is_nullable();
            fields.push(Field::new(&call.output, result, nullable));
        }
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// Looks up a column by name with an error that lists what exists.
pub(crate) fn lookup<'a>(schema: &'a Schema, name: &str) -> Result<&'a Field> {
    schema.field_with_name(name).map_err(|_| {
        Error::expr(format!(
            "unknown column '{name}' (available: {})",
            describe_columns(schema)
        ))
    })
}

/// `a, b, c` — the column names of a schema, for error messages.
pub fn describe_columns(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Same column names and types, in order (nullability may differ).
pub(crate) fn same_columns(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields().iter())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}
