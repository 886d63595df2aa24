//! Filter: keeps the rows whose predicate is TRUE (NULL and FALSE are dropped, as in SQL).

use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;

use super::{Operator, Output};
use crate::expr::PhysicalExpr;
use crate::{Error, Result};

pub struct Filter {
    predicate: PhysicalExpr,
}

impl Filter {
    /// `predicate` must be resolved against the input schema and be BOOLEAN.
    pub fn new(predicate: PhysicalExpr) -> Self {
        Filter { predicate }
    }
}

impl Operator for Filter {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mask = self.predicate.evaluate_predicate(&batch)?;
        let selected = mask.true_count();
        if selected == batch.num_rows() {
            out.push_batch(batch);
        } else if selected > 0 {
            let filtered =
                filter_record_batch(&batch, &mask).map_err(|e| Error::arrow("filter", e))?;
            out.push_batch(filtered);
        }
        Ok(())
    }
}
