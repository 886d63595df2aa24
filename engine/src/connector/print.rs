//! The `print` sink: writes every row to standard output (or error) in Flink's format,
//! `identifier:subtask> +I[v1, v2, …]`.

use std::io::Write;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int8Type;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::Sink;
use crate::element::{ROW_KIND_COLUMN, RowKind};
use crate::operator::OperatorContext;
use crate::{Error, Result};

pub struct PrintSink {
    identifier: Option<String>,
    standard_error: bool,
    prefix: String,
    line: String,
}

impl PrintSink {
    pub fn new(identifier: Option<String>, standard_error: bool) -> Self {
        PrintSink {
            identifier,
            standard_error,
            prefix: String::new(),
            line: String::new(),
        }
    }
}

impl Sink for PrintSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.prefix = match (&self.identifier, ctx.parallelism > 1) {
            (Some(id), true) => format!("{id}:{}> ", ctx.subtask.0 + 1),
            (Some(id), false) => format!("{id}> "),
            (None, true) => format!("{}> ", ctx.subtask.0 + 1),
            (None, false) => String::new(),
        };
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let options = FormatOptions::default().with_null("NULL");
        let schema = batch.schema();
        let kinds = schema
            .index_of(ROW_KIND_COLUMN)
            .ok()
            .map(|i| batch.column(i).as_primitive::<Int8Type>().clone());
        let mut formatters = Vec::with_capacity(batch.num_columns());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if field.name() != ROW_KIND_COLUMN {
                formatters.push(
                    ArrayFormatter::try_new(column.as_ref(), &options)
                        .map_err(|e| Error::arrow("print sink", e))?,
                );
            }
        }
        let mut text = String::new();
        for row in 0..batch.num_rows() {
            use std::fmt::Write as _;
            let kind = kinds
                .as_ref()
                .filter(|k| k.is_valid(row))
                .and_then(|k| RowKind::from_i8(k.value(row)))
                .unwrap_or(RowKind::Insert);
            self.line.clear();
            let _ = write!(self.line, "{}{}[", self.prefix, kind.short_string());
            for (i, formatter) in formatters.iter().enumerate() {
                if i > 0 {
                    self.line.push_str(", ");
                }
                let _ = write!(self.line, "{}", formatter.value(row));
            }
            self.line.push_str("]\n");
            text.push_str(&self.line);
        }
        let written = if self.standard_error {
            std::io::stderr().lock().write_all(text.as_bytes())
        } else {
            std::io::stdout().lock().write_all(text.as_bytes())
        };
        written.map_err(|e| Error::io("print to", "standard output", e))
    }

    fn finish(&mut self) -> Result<()> {
        let flushed = if self.standard_error {
            std::io::stderr().flush()
        } else {
            std::io::stdout().flush()
        };
        flushed.map_err(|e| Error::io("flush", "standard output", e))
    }
}
