//! Project: computes one output column per expression.
//!
//! A subexpression that several columns share is computed once per batch, into a column the
//! rewritten columns read (see [`crate::expr::shared`]).
//!
//! With a watermark strategy it is also a watermark assigner (the rowtime column is computed,
//! so the source cannot generate the watermarks): after each output batch it emits the
//! generator's watermark if it advanced, and it forwards only the final `MAX` watermark of its
//! input, as Flink's `WatermarkAssignerOperator` does.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::{Operator, Output};
use crate::element::Watermark;
use crate::expr::{Expr, PhysicalExpr, shared};
use crate::time::{WatermarkGenerator, WatermarkStrategy};
use crate::{Error, Result};

pub struct Project {
    /// The shared subexpressions, in order, each with the schema it is resolved against: the
    /// input's followed by the ones before it. Then the schema followed by all of them.
    shared: Vec<(PhysicalExpr, SchemaRef)>,
    extended: SchemaRef,
    /// Resolved against the input, or against `extended` when there are shared ones.
    columns: Vec<PhysicalExpr>,
    schema: SchemaRef,
    watermarks: Option<WatermarkGenerator>,
}

impl Project {
    /// `columns` are resolved against the input schema; `schema` names their outputs.
    pub fn new(columns: Vec<PhysicalExpr>, schema: SchemaRef) -> Self {
        Project {
            shared: Vec::new(),
            extended: Arc::new(Schema::empty()),
            columns,
            schema,
            watermarks: None,
        }
    }

    /// The projection of `columns` (output names and expressions) over `input`, computing
    /// shared subexpressions once.
    pub fn try_new(columns: &[(String, Expr)], input: &Schema, schema: SchemaRef) -> Result<Self> {
        let exprs: Vec<Expr> = columns.iter().map(|(_, expr)| expr.clone()).collect();
        let (hoisted, rewritten) = shared::extract(&exprs, input);
        if hoisted.is_empty() {
            let exprs = exprs
                .iter()
                .map(|expr| expr.resolve(input))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Project::new(exprs, schema));
        }
        let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        let mut shared = Vec::with_capacity(hoisted.len());
        for (name, expr) in &hoisted {
            let prefix = Arc::new(Schema::new(fields.clone()));
            let resolved = expr.resolve(&prefix)?;
            fields.push(Arc::new(Field::new(
                name,
                resolved.data_type().clone(),
                resolved.nullable(),
            )));
            shared.push((resolved, prefix));
        }
        let extended = Arc::new(Schema::new(fields));
        let columns = rewritten
            .iter()
            .map(|expr| expr.resolve(&extended))
            .collect::<Result<Vec<_>>>()?;
        Ok(Project {
            shared,
            extended,
            columns,
            schema,
            watermarks: None,
        })
    }

    /// Also emits watermarks from an output column with `strategy`.
    pub fn with_watermarks(mut self, strategy: WatermarkStrategy) -> Self {
        self.watermarks = Some(WatermarkGenerator::new(strategy));
        self
    }
}

impl Operator for Project {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let batch = if self.shared.is_empty() {
            batch
        } else {
            let mut columns = batch.columns().to_vec();
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            for (expr, prefix) in &self.shared {
                let partial =
                    RecordBatch::try_new_with_options(prefix.clone(), columns.clone(), &options)
                        .map_err(|e| Error::arrow("project", e))?;
                columns.push(expr.evaluate(&partial)?);
            }
            RecordBatch::try_new_with_options(self.extended.clone(), columns, &options)
                .map_err(|e| Error::arrow("project", e))?
        };
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

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Decimal128Array, Int64Array};
    use arrow::datatypes::DataType;
    use proptest::prelude::*;

    use super::*;
    use crate::element::StreamElement;
    use crate::expr::{col, lit};

    fn input_schema() -> Schema {
        Schema::new(vec![
            Field::new("price", DataType::Decimal128(15, 2), true),
            Field::new("discount", DataType::Decimal128(15, 2), true),
            Field::new("n", DataType::Int64, true),
        ])
    }

    /// Q1's columns, and a repeat under CASE that stays where it is.
    fn columns() -> Vec<(String, Expr)> {
        let one = || lit(decimal_literal(100));
        let net = col("price").mul(one().sub(col("discount")));
        let ratio = col("n").div(col("n").sub(lit(3i64)));
        vec![
            ("net".into(), net.clone()),
            ("charge".into(), net.clone().mul(one().add(col("discount")))),
            ("twice".into(), net.clone().add(net)),
            (
                "guarded".into(),
                Expr::Case {
                    operand: None,
                    when_then: vec![(col("n").not_eq(lit(3i64)), ratio.clone())],
                    else_expr: None,
                },
            ),
            ("n".into(), col("n")),
        ]
    }

    /// A `DECIMAL(15, 2)` literal of `cents` hundredths.
    fn decimal_literal(cents: i128) -> crate::expr::ScalarValue {
        crate::expr::ScalarValue::Decimal128 {
            value: cents,
            precision: 15,
            scale: 2,
        }
    }

    fn run(project: &mut Project, batch: RecordBatch) -> RecordBatch {
        let mut out = Output::default();
        project.process_batch(0, batch, &mut out).unwrap();
        match out.drain().pop() {
            Some(StreamElement::Batch(batch)) => batch,
            other => panic!("expected one batch, got {other:?}"),
        }
    }

    proptest! {
        /// Computing shared subexpressions once gives the columns that evaluating every
        /// expression as written gives, NULLs included; a repeat under CASE is left in place,
        /// so the division by zero it guards never happens.
        #[test]
        fn shared_subexpressions_change_no_value(
            rows in proptest::collection::vec(
                (any::<Option<i32>>(), proptest::option::of(0i64..100), proptest::option::of(0i64..6)),
                1..50,
            ),
        ) {
            let input = input_schema();
            let columns = columns();
            let plain_exprs = columns
                .iter()
                .map(|(_, e)| e.resolve(&input))
                .collect::<crate::Result<Vec<_>>>()
                .unwrap();
            let schema = Arc::new(Schema::new(
                columns
                    .iter()
                    .zip(&plain_exprs)
                    .map(|((name, _), e)| Field::new(name, e.data_type().clone(), true))
                    .collect::<Vec<_>>(),
            ));
            let mut plain = Project::new(plain_exprs, schema.clone());
            let mut shared = Project::try_new(&columns, &input, schema).unwrap();
            prop_assert_eq!(shared.shared.len(), 1, "one shared product");
            let decimal = |values: Vec<Option<i128>>| -> ArrayRef {
                Arc::new(
                    Decimal128Array::from(values)
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                )
            };
            let batch = RecordBatch::try_new(
                Arc::new(input),
                vec![
                    decimal(rows.iter().map(|r| r.0.map(i128::from)).collect()),
                    decimal(rows.iter().map(|r| r.1.map(i128::from)).collect()),
                    Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
                ],
            )
            .unwrap();
            prop_assert_eq!(run(&mut shared, batch.clone()), run(&mut plain, batch));
        }
    }
}
