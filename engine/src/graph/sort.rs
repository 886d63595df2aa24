//! The description of a sort: `ORDER BY` keys, `OFFSET` and `LIMIT` (`FETCH`).
//!
//! A bounded input is sorted in two steps: every subtask sorts (or keeps its top `offset +
//! fetch` rows of) its share, then a single subtask merges the shares and applies the offset.
//! The final step is the only one with an offset, so it must run at parallelism 1 (validation
//! checks). Without keys, the operator is a plain limit: it passes the first rows through as
//! they come, which is also valid on an unbounded stream.
//!
//! An event-time sort (`event_time`, streaming `ORDER BY rowtime [, …]`, Flink's temporal
//! sort) buffers rows until the watermark passes them and then emits them sorted; rows that
//! arrive behind the watermark are late and dropped (counted). It has no offset or fetch.

use arrow::compute::SortOptions;
use arrow::datatypes::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use super::spec::lookup;
use crate::Result;

/// One `ORDER BY` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortKey {
    pub column: String,
    pub descending: bool,
    /// Whether NULLs come before every value. Flink's default: first for ascending keys, last
    /// for descending ones ([`SortKey::new`]).
    pub nulls_first: bool,
}

impl SortKey {
    /// A key with Flink's default NULL order (NULLS FIRST when ascending, LAST when descending).
    pub fn new(column: impl Into<String>, descending: bool) -> Self {
        SortKey {
            column: column.into(),
            descending,
            nulls_first: !descending,
        }
    }

    pub fn with_nulls_first(mut self, nulls_first: bool) -> Self {
        self.nulls_first = nulls_first;
        self
    }

    pub fn options(&self) -> SortOptions {
        SortOptions {
            descending: self.descending,
            nulls_first: self.nulls_first,
        }
    }
}

impl std::fmt::Display for SortKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} NULLS {}",
            self.column,
            if self.descending { "DESC" } else { "ASC" },
            if self.nulls_first { "FIRST" } else { "LAST" }
        )
    }
}

/// The configuration of a sort (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortSpec {
    /// Sort keys, most significant first; empty for a plain limit.
    pub keys: Vec<SortKey>,
    /// Rows skipped at the start of the sorted result.
    #[serde(default)]
    pub offset: u64,
    /// At most this many rows after the offset; `None` for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<u64>,
    /// The columns emitted, in order (the sort may use columns it does not emit); `None` for
    /// all input columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Vec<String>>,
    /// The first key is an ascending event-time (TIMESTAMP) column: rows are emitted, sorted,
    /// once the watermark passes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub event_time: bool,
}

impl SortSpec {
    /// The number of leading rows this sort can ever need to keep: `offset + fetch`.
    pub fn kept_rows(&self) -> Option<u64> {
        self.fetch.map(|f| f.saturating_add(self.offset))
    }

    pub fn output_schema(&self, input: &Schema) -> Result<SchemaRef> {
        for key in &self.keys {
            lookup(input, &key.column)?;
        }
        if self.event_time {
            let Some(first) = self.keys.first() else {
                return Err(crate::Error::expr("an event-time sort needs a time key"));
            };
            let time = lookup(input, &first.column)?;
            if first.descending
                || !matches!(time.data_type(), arrow::datatypes::DataType::Timestamp(..))
                || self.offset > 0
                || self.fetch.is_some()
            {
                return Err(crate::Error::expr(format!(
                    "an event-time sort starts with an ascending TIMESTAMP key and has no \
                     OFFSET or LIMIT (key '{}' of type {})",
                    first,
                    time.data_type()
                )));
            }
        }
        Ok(match &self.output {
            None => std::sync::Arc::new(input.clone()),
            Some(columns) => {
                let fields = columns
                    .iter()
                    .map(|c| lookup(input, c).cloned())
                    .collect::<Result<Vec<_>>>()?;
                std::sync::Arc::new(Schema::new(fields))
            }
        })
    }

    /// `keys=[…], offset=…, fetch=…` for EXPLAIN.
    pub fn describe(&self) -> String {
        let mut d = format!(
            "keys=[{}]",
            self.keys
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        if self.offset > 0 {
            d.push_str(&format!(", offset={}", self.offset));
        }
        if let Some(fetch) = self.fetch {
            d.push_str(&format!(", fetch={fetch}"));
        }
        if let Some(output) = &self.output {
            d.push_str(&format!(", output=[{}]", output.join(", ")));
        }
        if self.event_time {
            d.push_str(", on watermarks");
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn default_null_order_follows_flink() {
        assert!(SortKey::new("a", false).nulls_first);
        assert!(!SortKey::new("a", true).nulls_first);
    }

    #[test]
    fn unknown_key_is_named() {
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
        let spec = SortSpec {
            keys: vec![SortKey::new("b", false)],
            offset: 0,
            fetch: None,
            output: None,
            event_time: false,
        };
        let err = spec.output_schema(&schema).unwrap_err().to_string();
        assert!(err.contains("unknown column 'b'"), "{err}");
    }
}
