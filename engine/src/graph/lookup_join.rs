//! The description of a lookup join: each row of the single input (the probe side) is joined
//! with the rows of a bounded lookup table that have equal keys (Flink's processing-time
//! temporal join, `JOIN t FOR SYSTEM_TIME AS OF s.proc_time ON s.k = t.k`).
//!
//! The lookup table is no input of the vertex: its bounded source is part of the spec and
//! every subtask loads all of it when it opens (the operator is chained to its input, with no
//! exchange). Output columns are the input's columns, then the table's under the names in
//! [`LookupJoinSpec::lookup_columns`] (a table column whose name the input has is renamed by
//! the caller, e.g. `<name>_right`). A left join keeps input rows without a match, with NULLs
//! in the table's columns, which are then nullable.
//!
//! Probe keys are expressions over the input; each is compared with a key column of the table
//! after both are cast to a common type ([`LookupJoinSpec::key_types`]): integers widen to the
//! wider integer, integers and floats to DOUBLE; other types must be equal. A NULL key matches
//! nothing. An optional `condition` over the output columns decides which key matches count
//! (Flink's non-equi join conditions): for a left join, a row whose matches all fail it is
//! emitted once with NULLs.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use super::JoinType;
use super::spec::lookup;
use crate::connector::SourceSpec;
use crate::expr::Expr;
use crate::{Error, Result};

/// A join of the input with a bounded table loaded into memory by each subtask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupJoinSpec {
    /// The table's name (errors, EXPLAIN).
    pub table: String,
    /// The bounded source the table is read from.
    pub source: SourceSpec,
    /// Key expressions over the input, pairwise equal to `lookup_keys`.
    pub probe_keys: Vec<Expr>,
    /// Key columns of the table.
    pub lookup_keys: Vec<String>,
    /// `Inner` or `Left`.
    pub join_type: JoinType,
    /// The output names of the table's columns, one per column in table order.
    pub lookup_columns: Vec<String>,
    /// Further join conditions over the output columns (BOOLEAN; NULL counts as false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Expr>,
}

/// The type both sides of a key pair are cast to, or `None` when they cannot be compared.
pub(crate) fn common_key_type(probe: &DataType, table: &DataType) -> Option<DataType> {
    use DataType::*;
    fn int_rank(t: &DataType) -> Option<u8> {
        Some(match t {
            Int8 => 1,
            Int16 => 2,
            Int32 => 3,
            Int64 => 4,
            _ => return None,
        })
    }
    if probe == table {
        return Some(probe.clone());
    }
    if let (Some(a), Some(b)) = (int_rank(probe), int_rank(table)) {
        return Some(if a >= b { probe.clone() } else { table.clone() });
    }
    let numeric = |t: &DataType| int_rank(t).is_some() || matches!(t, Float32 | Float64);
    if numeric(probe) && numeric(table) {
        return Some(Float64);
    }
    match (probe, table) {
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => Some(Utf8),
        _ => None,
    }
}

impl LookupJoinSpec {
    /// The schema of the table's rows.
    pub fn table_schema(&self) -> Result<SchemaRef> {
        self.source.schema()
    }

    /// Checks that the table can be looked up: a bounded source.
    fn check_source(&self) -> Result<()> {
        match &self.source {
            SourceSpec::Filesystem(_) | SourceSpec::Memory(_) | SourceSpec::TextFile(_) => Ok(()),
            SourceSpec::Datagen(datagen) => match datagen.config()?.total_rows() {
                Some(_) => Ok(()),
                None => Err(Error::expr(format!(
                    "lookup table '{}' is an unbounded datagen table; set 'number-of-rows' to \
                     look it up",
                    self.table
                ))),
            },
            SourceSpec::Nexmark(_) => Err(Error::expr(format!(
                "lookup table '{}' uses the nexmark connector, which cannot be looked up (use a \
                 filesystem or bounded datagen table)",
                self.table
            ))),
        }
    }

    /// The common type of each key pair, checked against the input and the table.
    pub fn key_types(&self, input: &Schema) -> Result<Vec<DataType>> {
        let table = self.table_schema()?;
        if self.probe_keys.is_empty() {
            return Err(Error::expr(format!(
                "a lookup join with '{}' needs at least one key",
                self.table
            )));
        }
        if self.probe_keys.len() != self.lookup_keys.len() {
            return Err(Error::expr(format!(
                "a lookup join needs as many probe keys ({}) as lookup keys ({})",
                self.probe_keys.len(),
                self.lookup_keys.len()
            )));
        }
        self.probe_keys
            .iter()
            .zip(&self.lookup_keys)
            .map(|(probe, key)| {
                let probe_type = probe.resolve(input)?.data_type().clone();
                let key_type = lookup(&table, key)?.data_type().clone();
                common_key_type(&probe_type, &key_type).ok_or_else(|| {
                    Error::expr(format!(
                        "lookup key {probe} is {probe_type} but column '{key}' of table '{}' is \
                         {key_type}; cast one side so that they can be compared",
                        self.table
                    ))
                })
            })
            .collect()
    }

    /// The input's columns, then the table's (nullable for a left join).
    fn joined_schema(&self, input: &Schema) -> Result<SchemaRef> {
        let table = self.table_schema()?;
        if self.lookup_columns.len() != table.fields().len() {
            return Err(Error::expr(format!(
                "lookup join names {} columns of table '{}', which has {} ({})",
                self.lookup_columns.len(),
                self.table,
                table.fields().len(),
                super::describe_columns(&table)
            )));
        }
        let nullable = self.join_type == JoinType::Left;
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (name, field) in self.lookup_columns.iter().zip(table.fields()) {
            if fields.iter().any(|f| f.name() == name) {
                return Err(Error::expr(format!(
                    "lookup join output column '{name}' (of table '{}') is also an input \
                     column; rename one of them",
                    self.table
                )));
            }
            fields.push(Field::new(
                name,
                field.data_type().clone(),
                field.is_nullable() || nullable,
            ));
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Checks the spec against the input schema and returns the output schema.
    pub fn output_schema(&self, input: &Schema) -> Result<SchemaRef> {
        match self.join_type {
            JoinType::Inner | JoinType::Left => {}
            other => {
                return Err(Error::expr(format!(
                    "a lookup join is an inner or left join, not {other:?}"
                )));
            }
        }
        self.check_source()?;
        self.key_types(input)?;
        let schema = self.joined_schema(input)?;
        if let Some(condition) = &self.condition {
            let resolved = condition.resolve(&schema)?;
            if resolved.data_type() != &DataType::Boolean {
                return Err(Error::expr(format!(
                    "lookup join condition must be BOOLEAN, found {}",
                    resolved.data_type()
                )));
            }
        }
        Ok(schema)
    }

    /// One line for EXPLAIN.
    pub fn describe(&self) -> String {
        let keys = self
            .probe_keys
            .iter()
            .zip(&self.lookup_keys)
            .map(|(p, k)| format!("{p} = {}.{k}", self.table))
            .collect::<Vec<_>>()
            .join(", ");
        let mut d = format!(
            "{:?} table={} ({}), keys=[{keys}]",
            self.join_type,
            self.table,
            self.source.name()
        );
        if let Some(condition) = &self.condition {
            d.push_str(&format!(", condition={condition}"));
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_widen_like_flink() {
        use DataType::*;
        assert_eq!(common_key_type(&Int32, &Int64), Some(Int64));
        assert_eq!(common_key_type(&Int64, &Int16), Some(Int64));
        assert_eq!(common_key_type(&Int32, &Float32), Some(Float64));
        assert_eq!(common_key_type(&Utf8, &Utf8), Some(Utf8));
        assert_eq!(common_key_type(&Utf8, &Int64), None);
        assert_eq!(common_key_type(&Date32, &Int32), None);
    }

    #[test]
    fn a_spec_round_trips_through_json() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let spec = LookupJoinSpec {
            table: "dim".into(),
            source: SourceSpec::Datagen(crate::connector::DatagenSource::new(
                schema,
                [("number-of-rows".to_string(), "3".to_string())].into(),
            )),
            probe_keys: vec![crate::expr::col("a").modulo(crate::expr::lit(10i64))],
            lookup_keys: vec!["k".into()],
            join_type: JoinType::Left,
            lookup_columns: vec!["k".into()],
            condition: Some(crate::expr::col("k").gt(crate::expr::lit(0i64))),
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<LookupJoinSpec>(&json).unwrap(), spec);
    }
}
