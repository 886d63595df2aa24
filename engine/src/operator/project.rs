//! Project: computes one output column per expression.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::{Operator, Output};
use crate::expr::PhysicalExpr;
use crate::{Error, Result};

pub struct Project {
    columns: Vec<PhysicalExpr>,
    schema: SchemaRef,
}

impl Project {
    /// `columns` are resolved against the input schema; `schema` names their outputs.
    pub fn new(columns: Vec<PhysicalExpr>, schema: SchemaRef) -> Self {
        Project { columns, schema }
    }
}

impl Operator for Project {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let arrays = self
            .columns
            .iter()
            .map(|expr| expr.evaluate(&batch))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let projected = RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| Error::arrow("project", e))?;
        out.push_batch(projected);
        Ok(())
    }
}
