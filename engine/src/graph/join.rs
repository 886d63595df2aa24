//! The description of a two-input join: equi-join keys and one of four kinds (regular,
//! interval, tumbling window, and the subquery joins: semi, anti, null-aware anti, single),
//! and how its output schema follows from its two inputs.
//!
//! Output columns are the left input's columns, then the right input's, under their own names.
//! A right column whose name is already taken by a left column is renamed `<name>_right` (so
//! a self-join of `bids` yields `price` and `price_right`); if that name is taken too the spec
//! is rejected and the caller renames a column first. A regular join emits a changelog: a
//! leading `_row_kind` column comes before everything else. Outer joins make the columns of
//! the side that may be missing nullable.
//!
//! A subquery join ([`JoinKind::Subquery`]) emits each left row at most once and no
//! `_row_kind`: semi and anti joins output the left columns only; a single join outputs the
//! left columns then the (nullable) right columns, renamed as above. Its residual predicate
//! reads the same left-then-right columns.
//!
//! Key columns must have the same type on both sides: both inputs are hash-partitioned on their
//! keys, and only equal types hash equal values to the same key group.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use super::spec::lookup;
use crate::element::ROW_KIND_COLUMN;
use crate::expr::Expr;
use crate::{Error, Result};

/// The suffix given to a right column whose name a left column already has.
pub const RIGHT_DUPLICATE_SUFFIX: &str = "_right";

/// A join of input 0 (left) with input 1 (right) on equal keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinSpec {
    /// Key columns of the left input.
    pub left_keys: Vec<String>,
    /// Key columns of the right input, pairwise equal to `left_keys`.
    pub right_keys: Vec<String>,
    /// Named `join` in JSON: an operator's own `kind` tag is the operator's.
    #[serde(rename = "join")]
    pub kind: JoinKind,
}

/// Which rows of the two inputs are joined, and when results are emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JoinKind {
    /// Joins every pair of rows with equal keys, keeping all rows in state forever. Emits a
    /// changelog (`_row_kind` first): `+I` for each new result row; an outer join first emits
    /// a row without a partner padded with NULLs and retracts it (`-D`) when the first partner
    /// arrives, as Flink does.
    Regular { join_type: JoinType },
    /// The batch hash join (batch mode only): both inputs are held until they end, then the
    /// smaller side of each partition is built into a hash table and the larger one probes
    /// it. Emits final rows only (no `_row_kind`), unmatched rows of a preserved side padded
    /// with NULLs. Spills both sides by key hash beyond the operator's managed memory.
    Hash { join_type: JoinType },
    /// Flink's interval join (inner): `left_time BETWEEN right_time + lower_ms AND right_time +
    /// upper_ms`, both bounds inclusive. Emits as soon as both rows are there; state is dropped
    /// once the watermark shows a row can no longer match.
    Interval {
        left_time: String,
        right_time: String,
        lower_ms: i64,
        upper_ms: i64,
    },
    /// Joins rows with equal keys in the same tumbling event-time window (inner). A window's
    /// results are emitted when the watermark passes its end; then its state is dropped.
    Window {
        left_time: String,
        right_time: String,
        size_ms: i64,
    },
    /// The joins a decorrelated subquery becomes (`EXISTS`, `IN`, scalar subqueries): each
    /// left row is emitted at most once, after both inputs have ended (batch mode only; the
    /// SQL planner refuses them in streaming mode).
    Subquery {
        join_type: SubqueryJoinType,
        /// A condition on the pair (left columns, then right columns renamed as the module
        /// docs say) that a key match must also meet, as `l2.l_suppkey <> l1.l_suppkey` in
        /// `EXISTS`; only for semi and anti joins.
        residual: Option<Expr>,
        /// The subquery, as written, for error messages.
        subquery: String,
    },
}

/// How a subquery join treats the left rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubqueryJoinType {
    /// Each left row with at least one partner (`EXISTS`, `IN`).
    Semi,
    /// Each left row without a partner (`NOT EXISTS`); a NULL key has no partner.
    Anti,
    /// `NOT IN` on one key: no left row if the right side has a NULL key; otherwise each left
    /// row with a non-NULL key and no partner (all left rows if the right side is empty).
    NullAwareAnti,
    /// Each left row with the columns of its one partner, or NULLs without one (a scalar
    /// subquery); a second partner is an error naming the subquery.
    Single,
}

/// Which unmatched rows a regular join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinType {
    Inner,
    /// Every left row appears; with NULLs on the right while it has no partner.
    Left,
    /// Every right row appears; with NULLs on the left while it has no partner.
    Right,
    /// Both.
    Full,
}

impl JoinType {
    /// Whether rows of input `side` (0 left, 1 right) without a partner are emitted.
    pub fn preserves(self, side: usize) -> bool {
        match self {
            JoinType::Inner => false,
            JoinType::Left => side == 0,
            JoinType::Right => side == 1,
            JoinType::Full => true,
        }
    }
}

/// Column indices of a join spec checked against its input schemas.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedJoin {
    /// Key column indices per side.
    pub keys: [Vec<usize>; 2],
    /// Event-time column index per side (interval and window joins).
    pub times: Option<[usize; 2]>,
}

impl JoinSpec {
    /// A short name for the join kind (metrics, logs).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            JoinKind::Regular { .. } => "RegularJoin",
            JoinKind::Hash { .. } => "HashJoin",
            JoinKind::Interval { .. } => "IntervalJoin",
            JoinKind::Window { .. } => "WindowJoin",
            JoinKind::Subquery { join_type, .. } => match join_type {
                SubqueryJoinType::Semi => "SemiJoin",
                SubqueryJoinType::Anti => "AntiJoin",
                SubqueryJoinType::NullAwareAnti => "NullAwareAntiJoin",
                SubqueryJoinType::Single => "SingleJoin",
            },
        }
    }

    /// Whether the join runs only over bounded inputs, holding them until they end (the hash
    /// and subquery joins of batch mode).
    pub fn is_batch(&self) -> bool {
        matches!(self.kind, JoinKind::Hash { .. } | JoinKind::Subquery { .. })
    }

    /// Checks the spec against the input schemas and returns the column indices it uses.
    pub(crate) fn resolve(&self, left: &Schema, right: &Schema) -> Result<ResolvedJoin> {
        for (side, schema) in [("left", left), ("right", right)] {
            if schema.field_with_name(ROW_KIND_COLUMN).is_ok() {
                // An inner regular join consumes retractions; the others do not yet.
                let what = match self.kind {
                    JoinKind::Regular {
                        join_type: JoinType::Inner,
                    } => continue,
                    JoinKind::Regular { .. } => "outer join",
                    JoinKind::Hash { .. } => "batch hash join",
                    JoinKind::Interval { .. } => "interval join",
                    JoinKind::Window { .. } => "window join",
                    JoinKind::Subquery { .. } => "subquery join",
                };
                return Err(Error::expr(format!(
                    "{what} over updating input is not supported yet (the {side} input has a \
                     '{ROW_KIND_COLUMN}' column)"
                )));
            }
        }
        if self.left_keys.is_empty() {
            return Err(Error::expr("a join needs at least one key column"));
        }
        if self.left_keys.len() != self.right_keys.len() {
            return Err(Error::expr(format!(
                "a join needs as many left keys ({}) as right keys ({})",
                self.left_keys.join(", "),
                self.right_keys.join(", ")
            )));
        }
        let mut keys = [Vec::new(), Vec::new()];
        for (l, r) in self.left_keys.iter().zip(&self.right_keys) {
            let lf = lookup(left, l).map_err(|e| side_error("left", e))?;
            let rf = lookup(right, r).map_err(|e| side_error("right", e))?;
            if lf.data_type() != rf.data_type() {
                return Err(Error::expr(format!(
                    "join key '{l}' is {} on the left but '{r}' is {} on the right; cast one \
                     side so both have the same type",
                    lf.data_type(),
                    rf.data_type()
                )));
            }
            keys[0].push(left.index_of(l).map_err(|e| Error::arrow("join key", e))?);
            keys[1].push(right.index_of(r).map_err(|e| Error::arrow("join key", e))?);
        }
        let times = match &self.kind {
            JoinKind::Regular { .. } | JoinKind::Hash { .. } => None,
            JoinKind::Subquery {
                join_type,
                residual,
                subquery,
            } => {
                if *join_type == SubqueryJoinType::NullAwareAnti && self.left_keys.len() != 1 {
                    return Err(Error::expr(format!(
                        "not supported yet: NOT IN over more than one column or with \
                         correlation ({subquery})"
                    )));
                }
                if residual.is_some()
                    && matches!(
                        join_type,
                        SubqueryJoinType::Single | SubqueryJoinType::NullAwareAnti
                    )
                {
                    return Err(Error::expr(format!(
                        "not supported yet: a non-equality correlation in a scalar or NOT IN \
                         subquery ({subquery})"
                    )));
                }
                None
            }
            JoinKind::Interval {
                left_time,
                right_time,
                lower_ms,
                upper_ms,
            } => {
                if lower_ms > upper_ms {
                    return Err(Error::expr(format!(
                        "interval join lower bound {lower_ms} ms is above its upper bound \
                         {upper_ms} ms"
                    )));
                }
                Some([
                    time_column(left, left_time, "left")?,
                    time_column(right, right_time, "right")?,
                ])
            }
            JoinKind::Window {
                left_time,
                right_time,
                size_ms,
            } => {
                if *size_ms <= 0 {
                    return Err(Error::expr(format!(
                        "window join size must be positive, found {size_ms} ms"
                    )));
                }
                Some([
                    time_column(left, left_time, "left")?,
                    time_column(right, right_time, "right")?,
                ])
            }
        };
        Ok(ResolvedJoin { keys, times })
    }

    /// Left columns then right columns (renamed as the module docs say), with a leading
    /// `_row_kind` for a regular join.
    pub fn output_schema(&self, left: &Schema, right: &Schema) -> Result<SchemaRef> {
        self.resolve(left, right)?;
        let (changelog, nullable) = match &self.kind {
            JoinKind::Regular { join_type } => {
                (true, [join_type.preserves(1), join_type.preserves(0)])
            }
            JoinKind::Hash { join_type } => {
                (false, [join_type.preserves(1), join_type.preserves(0)])
            }
            JoinKind::Interval { .. } | JoinKind::Window { .. } => (false, [false, false]),
            JoinKind::Subquery {
                join_type,
                residual,
                ..
            } => {
                let pairs = pair_schema(left, right)?;
                if let Some(residual) = residual {
                    residual.resolve(&pairs)?;
                }
                return Ok(match join_type {
                    SubqueryJoinType::Single => pairs,
                    SubqueryJoinType::Semi
                    | SubqueryJoinType::Anti
                    | SubqueryJoinType::NullAwareAnti => Arc::new(left.clone()),
                });
            }
        };
        Self::fields(left, right, changelog, nullable)
    }

    fn fields(
        left: &Schema,
        right: &Schema,
        changelog: bool,
        nullable: [bool; 2],
    ) -> Result<SchemaRef> {
        let mut fields = Vec::with_capacity(left.fields().len() + right.fields().len() + 1);
        if changelog {
            fields.push(Field::new(ROW_KIND_COLUMN, DataType::Int8, false));
        }
        let mut names: HashSet<&str> = HashSet::new();
        // An updating input's `_row_kind` is not an output column: the join has its own.
        for field in left.fields().iter().filter(|f| f.name() != ROW_KIND_COLUMN) {
            names.insert(field.name());
            fields.push(
                field
                    .as_ref()
                    .clone()
                    .with_nullable(field.is_nullable() || nullable[0]),
            );
        }
        for field in right
            .fields()
            .iter()
            .filter(|f| f.name() != ROW_KIND_COLUMN)
        {
            let name = if names.contains(field.name().as_str()) {
                let renamed = format!("{}{RIGHT_DUPLICATE_SUFFIX}", field.name());
                if names.contains(renamed.as_str()) || right.field_with_name(&renamed).is_ok() {
                    return Err(Error::expr(format!(
                        "right column '{}' clashes with a left column, and its renamed form \
                         '{renamed}' is taken too; rename one of them before the join",
                        field.name()
                    )));
                }
                renamed
            } else {
                field.name().clone()
            };
            fields.push(
                field
                    .as_ref()
                    .clone()
                    .with_name(name)
                    .with_nullable(field.is_nullable() || nullable[1]),
            );
        }
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// Left columns then right columns (right renamed on a clash, and nullable), without
/// `_row_kind`: the output of a single join and the input of a subquery join's residual.
pub(crate) fn pair_schema(left: &Schema, right: &Schema) -> Result<SchemaRef> {
    JoinSpec::fields(left, right, false, [false, true])
}

fn side_error(side: &str, error: Error) -> Error {
    match error {
        Error::Expression { message } => Error::expr(format!("{side} join key: {message}")),
        other => other,
    }
}

fn time_column(schema: &Schema, name: &str, side: &str) -> Result<usize> {
    let field = lookup(schema, name).map_err(|e| match e {
        Error::Expression { message } => Error::expr(format!("{side} time column: {message}")),
        other => other,
    })?;
    match field.data_type() {
        DataType::Timestamp(_, _) | DataType::Int64 => schema
            .index_of(name)
            .map_err(|e| Error::arrow("time column", e)),
        other => Err(Error::expr(format!(
            "{side} time column '{name}' must be TIMESTAMP or BIGINT milliseconds, found {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::TimeUnit;

    use super::*;

    fn schema(fields: &[(&str, DataType)]) -> Schema {
        Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), false))
                .collect::<Vec<_>>(),
        )
    }

    fn spec(kind: JoinKind) -> JoinSpec {
        JoinSpec {
            left_keys: vec!["k".into()],
            right_keys: vec!["k".into()],
            kind,
        }
    }

    #[test]
    fn duplicate_right_names_get_a_suffix_and_outer_sides_become_nullable() {
        let left = schema(&[("k", DataType::Int64), ("a", DataType::Utf8)]);
        let right = schema(&[("k", DataType::Int64), ("b", DataType::Utf8)]);
        let out = spec(JoinKind::Regular {
            join_type: JoinType::Left,
        })
        .output_schema(&left, &right)
        .unwrap();
        let names: Vec<_> = out.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["_row_kind", "k", "a", "k_right", "b"]);
        assert!(!out.field(1).is_nullable());
        assert!(out.field(3).is_nullable() && out.field(4).is_nullable());
    }

    #[test]
    fn mismatched_keys_and_times_are_named() {
        let left = schema(&[("k", DataType::Int64), ("t", DataType::Utf8)]);
        let right = schema(&[("k", DataType::Int32), ("t", DataType::Int64)]);
        let err = spec(JoinKind::Regular {
            join_type: JoinType::Inner,
        })
        .output_schema(&left, &right)
        .unwrap_err()
        .to_string();
        assert!(err.contains("'k' is Int64 on the left"), "{err}");
        let right = schema(&[
            ("k", DataType::Int64),
            ("t", DataType::Timestamp(TimeUnit::Millisecond, None)),
        ]);
        let err = spec(JoinKind::Interval {
            left_time: "t".into(),
            right_time: "t".into(),
            lower_ms: 0,
            upper_ms: 1,
        })
        .output_schema(&left, &right)
        .unwrap_err()
        .to_string();
        assert!(err.contains("left time column 't'"), "{err}");
    }

    #[test]
    fn updating_input_is_taken_by_inner_regular_joins_only() {
        let left = schema(&[(ROW_KIND_COLUMN, DataType::Int8), ("k", DataType::Int64)]);
        let right = schema(&[("k", DataType::Int64)]);
        let out = spec(JoinKind::Regular {
            join_type: JoinType::Inner,
        })
        .output_schema(&left, &right)
        .unwrap();
        let names: Vec<&str> = out.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, [ROW_KIND_COLUMN, "k", "k_right"]);
        let err = spec(JoinKind::Regular {
            join_type: JoinType::Left,
        })
        .output_schema(&left, &right)
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("outer join over updating input is not supported yet"),
            "{err}"
        );
    }
}
