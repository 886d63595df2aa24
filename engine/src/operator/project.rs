//! Project: computes one output column per expression.
//!
//! With a watermark strategy it is also a watermark assigner (the rowtime column is computed,
//! so the source cannot generate the watermarks): after each output batch it emits the
//! generator's watermark if it advanced, and it forwards only the final `MAX` watermark of its
//! input, as Flink's `WatermarkAssignerOperator` does.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::{Operator, Output};
use crate::element::Watermark;
use crate::expr::PhysicalExpr;
use crate::time::{WatermarkGenerator, WatermarkStrategy};
use crate::{Error, Result};

pub struct Project {
    columns: Vec<PhysicalExpr>,
    schema: SchemaRef,
    watermarks: Option<WatermarkGenerator>,
}

impl Project {
    /// `columns` are resolved against the input schema; `schema` names their outputs.
    pub fn new(columns: Vec<PhysicalExpr>, schema: SchemaRef) -> Self {
        Project {
            columns,
            schema,
            watermarks: None,
        }
    }

    /// Also emits watermarks from an output column with `strategy`.
    pub fn with_watermarks(mut self, strategy: WatermarkStrategy) -> Self {
        self.watermarks = Some(WatermarkGenerator::new(strategy));
        self
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
        let watermark = match &mut self.watermarks {
            Some(generator) => generator.on_batch(&projected)?,
            None => None,
        };
        out.push_batch(projected);
        if let Some(watermark) = watermark {
            out.push_watermark(watermark);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if self.watermarks.is_none() || watermark == Watermark::MAX {
            out.push_watermark(watermark);
        }
        Ok(())
    }
}
