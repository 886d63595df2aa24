//! Projection push-down into Parquet scans: a table read by a query is declared to its source
//! with only the columns the query can refer to, so the Parquet reader decodes nothing else
//! (it reads columns by name, which positional formats such as CSV cannot).
//!
//! Which columns a query refers to is decided conservatively from its text and the text of the
//! catalog's views: a column is kept when its name occurs as a word anywhere (a string literal
//! that happens to hold the name keeps it too, which costs a column, never a wrong answer). A
//! wildcard (`SELECT *`, `t.*`) anywhere keeps every column — except `EXISTS (SELECT * …)`,
//! whose select list produces nothing.

use std::collections::HashSet;

use super::catalog::Table;

/// The words a statement (and the views it may read) is made of.
#[derive(Debug, Clone)]
pub(crate) struct ColumnUse {
    words: HashSet<String>,
    wildcard: bool,
}

impl ColumnUse {
    /// The use made by the SQL texts `texts`.
    pub fn of<'t>(texts: impl IntoIterator<Item = &'t str>) -> Self {
        let mut words = HashSet::new();
        let mut wildcard = false;
        for text in texts {
            // The three tokens before the current one, nearest first.
            let mut before: [Option<&str>; 3] = [None; 3];
            for token in tokens(text) {
                let is =
                    |t: Option<&str>, word: &str| t.is_some_and(|t| t.eq_ignore_ascii_case(word));
                let selects_all = before[0].is_some_and(|p| {
                    p == ","
                        || p == "."
                        || is(Some(p), "select")
                        || is(Some(p), "distinct")
                        || is(Some(p), "all")
                });
                let in_exists =
                    is(before[0], "select") && before[1] == Some("(") && is(before[2], "exists");
                if token == "*" && selects_all && !in_exists {
                    wildcard = true;
                }
                if token.chars().next().is_some_and(is_word_char) {
                    words.insert(token.to_ascii_lowercase());
                }
                before = [Some(token), before[0], before[1]];
            }
        }
        ColumnUse { words, wildcard }
    }

    /// `table` with only the columns this use may refer to, when that drops any: for Parquet
    /// tables without computed columns, keeping the watermark's column and the partition keys.
    pub fn prune(&self, table: &Table) -> Option<Table> {
        let parquet = table.options.get("connector").map(String::as_str) == Some("filesystem")
            && table.options.get("format").map(String::as_str) == Some("parquet");
        if self.wildcard || !parquet || table.columns.iter().any(|c| c.computed.is_some()) {
            return None;
        }
        let keep = |name: &str| {
            self.words.contains(&name.to_ascii_lowercase())
                || table.watermark.as_ref().is_some_and(|w| w.column == name)
                || table.partition_keys.iter().any(|k| k == name)
        };
        let columns: Vec<_> = table
            .columns
            .iter()
            .filter(|c| keep(&c.name))
            .cloned()
            .collect();
        // A query that names none of the columns (`SELECT COUNT(1) FROM t`) still needs rows.
        if columns.len() == table.columns.len() || columns.is_empty() {
            return None;
        }
        let mut pruned = table.clone();
        pruned.columns = columns;
        Some(pruned)
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Words, and every other non-blank character on its own.
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        rest = rest.trim_start();
        let first = rest.chars().next()?;
        let len = if is_word_char(first) {
            rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len())
        } else {
            first.len_utf8()
        };
        let (token, tail) = rest.split_at(len);
        rest = tail;
        Some(token)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::datatypes::DataType;

    use super::*;
    use crate::sql::catalog::Column;

    fn table(format: &str) -> Table {
        let column = |name: &str| Column {
            name: name.into(),
            data_type: DataType::Int64,
            computed: None,
        };
        Table {
            name: "lineitem".into(),
            columns: vec![column("l_orderkey"), column("l_quantity"), column("l_tax")],
            watermark: None,
            primary_key: Vec::new(),
            options: BTreeMap::from([
                ("connector".to_string(), "filesystem".to_string()),
                ("format".to_string(), format.to_string()),
            ]),
            partition_keys: Vec::new(),
        }
    }

    fn kept(sql: &str, table: &Table) -> Option<Vec<String>> {
        ColumnUse::of([sql])
            .prune(table)
            .map(|t| t.columns.into_iter().map(|c| c.name).collect())
    }

    #[test]
    fn only_the_columns_a_query_names_are_read() {
        let parquet = table("parquet");
        assert_eq!(
            kept(
                "SELECT SUM(L_QUANTITY) FROM lineitem WHERE l_tax > 0",
                &parquet
            ),
            Some(vec!["l_quantity".to_string(), "l_tax".to_string()])
        );
        assert_eq!(
            kept("SELECT COUNT(*), 2 * l_tax FROM lineitem", &parquet),
            Some(vec!["l_tax".to_string()])
        );
    }

    #[test]
    fn the_select_list_of_exists_is_no_wildcard() {
        let parquet = table("parquet");
        assert_eq!(
            kept(
                "SELECT COUNT(*) FROM orders WHERE NOT EXISTS (SELECT * FROM lineitem \
                 WHERE l_orderkey = o_orderkey)",
                &parquet
            ),
            Some(vec!["l_orderkey".to_string()])
        );
    }

    #[test]
    fn wildcards_positional_formats_and_column_free_queries_read_everything() {
        let parquet = table("parquet");
        assert_eq!(kept("SELECT * FROM lineitem", &parquet), None);
        assert_eq!(kept("SELECT l.* FROM lineitem l", &parquet), None);
        assert_eq!(kept("SELECT DISTINCT * FROM lineitem", &parquet), None);
        assert_eq!(kept("SELECT COUNT(1) FROM lineitem", &parquet), None);
        assert_eq!(
            kept(
                "SELECT COUNT(*) FROM t WHERE x IN (SELECT * FROM lineitem)",
                &parquet
            ),
            None
        );
        assert_eq!(kept("SELECT l_tax FROM lineitem", &table("csv")), None);
    }
}
