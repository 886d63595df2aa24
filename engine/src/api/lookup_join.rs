//! Lookup joins in the DataStream API: a stream enriched from a bounded table that every
//! subtask loads (see [`crate::graph::LookupJoinSpec`]).

use super::DataStream;
use crate::Result;
use crate::graph::{LookupJoinSpec, OperatorSpec};

impl DataStream {
    /// Joins this stream with the bounded table of `spec`. The join runs at the stream's
    /// parallelism, chained to it (each subtask holds the whole table).
    pub fn lookup_join(&self, spec: LookupJoinSpec) -> Result<DataStream> {
        let operator = OperatorSpec::LookupJoin(spec);
        let schema = self.derive("LookupJoin", &operator)?;
        self.then("LookupJoin", operator, schema)
    }
}
