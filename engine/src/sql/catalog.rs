//! The session catalog: tables (`CREATE TABLE`, `DROP TABLE`) and views (`CREATE VIEW`,
//! `DROP VIEW`).
//!
//! A table keeps its declared columns in order — physical ones (what the connector produces)
//! and computed ones (`name AS expr`, evaluated by a projection after the source) — its
//! watermark (column and bounded delay), primary key and connector options. Names are
//! case-sensitive, as in Flink; a lookup that fails suggests the closest name.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sqlparser::ast::Query;

use crate::expr::Expr;
use crate::{Error, Result};

/// One declared column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub data_type: DataType,
    /// `Some` for a computed column.
    pub computed: Option<Expr>,
}

/// `WATERMARK FOR column AS column - INTERVAL …`.
#[derive(Debug, Clone)]
pub struct Watermark {
    pub column: String,
    pub delay_ms: i64,
}

/// A table created with `CREATE TABLE`.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub watermark: Option<Watermark>,
    pub primary_key: Vec<String>,
    /// The `WITH` options, `connector` included.
    pub options: BTreeMap<String, String>,
    /// `PARTITIONED BY` columns (physical columns of the table), in order.
    pub partition_keys: Vec<String>,
}

impl Table {
    /// The columns the connector reads or writes.
    pub fn physical_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .filter(|c| c.computed.is_none())
                .map(|c| Field::new(&c.name, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// Every column, computed ones included, in declaration order.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn has_computed_columns(&self) -> bool {
        self.columns.iter().any(|c| c.computed.is_some())
    }

    /// The `connector` option.
    pub fn connector(&self) -> Result<&str> {
        self.options
            .get("connector")
            .map(String::as_str)
            .ok_or_else(|| {
                Error::sql(
                    format!("table '{}'", self.name),
                    "missing option 'connector' in WITH (…)",
                )
            })
    }
}

/// Tables and views of a session.
#[derive(Debug, Default)]
pub struct Catalog {
    tables: BTreeMap<String, Table>,
    views: BTreeMap<String, Query>,
}

/// What a name refers to.
pub enum Relation<'a> {
    Table(&'a Table),
    View(&'a Query),
}

impl Catalog {
    pub fn add_table(&mut self, table: Table, if_not_exists: bool) -> Result<()> {
        if self.exists(&table.name) {
            if if_not_exists {
                return Ok(());
            }
            return Err(Error::sql(
                format!("CREATE TABLE {}", table.name),
                format!("a table or view named '{}' already exists", table.name),
            ));
        }
        self.tables.insert(table.name.clone(), table);
        Ok(())
    }

    pub fn add_view(&mut self, name: &str, query: Query, or_replace: bool) -> Result<()> {
        if self.tables.contains_key(name) || (self.views.contains_key(name) && !or_replace) {
            return Err(Error::sql(
                format!("CREATE VIEW {name}"),
                format!("a table or view named '{name}' already exists"),
            ));
        }
        self.views.insert(name.to_string(), query);
        Ok(())
    }

    fn exists(&self, name: &str) -> bool {
        self.tables.contains_key(name) || self.views.contains_key(name)
    }

    /// Looks up a table or view.
    /// The queries of every view.
    pub fn view_queries(&self) -> impl Iterator<Item = &Query> {
        self.views.values()
    }

    pub fn relation(&self, name: &str) -> Result<Relation<'_>> {
        if let Some(table) = self.tables.get(name) {
            return Ok(Relation::Table(table));
        }
        if let Some(view) = self.views.get(name) {
            return Ok(Relation::View(view));
        }
        Err(self.unknown(name))
    }

    /// Looks up a table (not a view), e.g. the target of an `INSERT`.
    pub fn table(&self, name: &str) -> Result<&Table> {
        self.tables.get(name).ok_or_else(|| self.unknown(name))
    }

    fn unknown(&self, name: &str) -> Error {
        let names = self.names();
        let lower = name.to_ascii_lowercase();
        let hint = match crate::expr::closest(&lower, names.iter().map(String::as_str)) {
            Some(best) => format!(" (did you mean '{best}'?)"),
            None if names.is_empty() => " (no tables are defined)".to_string(),
            None => format!(" (known: {})", names.join(", ")),
        };
        Error::sql(
            format!("table '{name}'"),
            format!("unknown table or view '{name}'{hint}"),
        )
    }

    /// Removes the table `name` (`DROP TABLE`). Without `if_exists`, a name that is no table
    /// is an error: a view's names `DROP VIEW`.
    pub fn drop_table(&mut self, name: &str, if_exists: bool) -> Result<()> {
        if self.tables.remove(name).is_some() {
            return Ok(());
        }
        let statement = format!("DROP TABLE {name}");
        if self.views.contains_key(name) {
            return Err(Error::sql(
                statement,
                format!("'{name}' is a view, not a table; drop it with DROP VIEW"),
            ));
        }
        if if_exists {
            return Ok(());
        }
        let tables = self.tables.keys().map(String::as_str).collect();
        Err(unknown_for(&statement, "table", name, tables))
    }

    /// Removes the view `name` (`DROP VIEW`). Without `if_exists`, a name that is no view is
    /// an error; a table's names `DROP TABLE`.
    pub fn drop_view(&mut self, name: &str, if_exists: bool) -> Result<()> {
        if self.views.remove(name).is_some() {
            return Ok(());
        }
        let statement = format!("DROP VIEW {name}");
        if self.tables.contains_key(name) {
            return Err(Error::sql(
                statement,
                format!("'{name}' is a table, not a view; drop it with DROP TABLE"),
            ));
        }
        if if_exists {
            return Ok(());
        }
        let views = self.views.keys().map(String::as_str).collect();
        Err(unknown_for(&statement, "view", name, views))
    }

    /// Table and view names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tables
            .keys()
            .chain(self.views.keys())
            .cloned()
            .collect();
        names.sort();
        names
    }
}

/// The error for `statement` (a `DROP`) of `name`, which is no `kind` (table or view): names
/// the known ones (`known`) closest to it.
fn unknown_for(statement: &str, kind: &str, name: &str, known: Vec<&str>) -> Error {
    let lower = name.to_ascii_lowercase();
    let hint = match crate::expr::closest(&lower, known.iter().copied()) {
        Some(best) => format!(" (did you mean '{best}'?)"),
        None if known.is_empty() => format!(" (no {kind}s are defined)"),
        None => format!(" (known: {})", known.join(", ")),
    };
    Error::sql(
        statement.to_string(),
        format!("{kind} '{name}' does not exist{hint}; add IF EXISTS to ignore this"),
    )
}
