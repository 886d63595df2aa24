//! Placeholder interface while the expression library lands on its own branch.

use arrow::array::{ArrayRef, BooleanArray};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    Column(String),
}

pub fn col(name: &str) -> Expr {
    Expr::Column(name.to_string())
}

impl Expr {
    pub fn resolve(&self, schema: &Schema) -> Result<PhysicalExpr> {
        match self {
            Expr::Column(name) => {
                let (index, field) = schema
                    .column_with_name(name)
                    .ok_or_else(|| Error::expr(format!("unknown column '{name}'")))?;
                Ok(PhysicalExpr {
                    index,
                    data_type: field.data_type().clone(),
                    nullable: field.is_nullable(),
                })
            }
        }
    }
    pub fn columns(&self) -> Vec<String> {
        match self {
            Expr::Column(name) => vec![name.clone()],
        }
    }
}

#[derive(Debug, Clone)]
pub struct PhysicalExpr {
    index: usize,
    data_type: DataType,
    nullable: bool,
}

impl PhysicalExpr {
    pub fn data_type(&self) -> &DataType {
        &self.data_type
    }
    pub fn nullable(&self) -> bool {
        self.nullable
    }
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        Ok(batch.column(self.index).clone())
    }
    pub fn evaluate_predicate(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let array = self.evaluate(batch)?;
        array
            .as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| Error::expr("predicate is not boolean"))
    }
}
