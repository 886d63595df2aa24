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
            let all: Vec<&str> = tokens(text).collect();
            for (at, &token) in all.iter().enumerate() {
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
                // `SELECT * FROM (SELECT …) AS v (a, b)` alone (how a view's column list is
                // planned) selects the subquery's columns, which name what they read.
                let over_subquery = all
                    .get(at + 1)
                    .is_some_and(|t| t.eq_ignore_ascii_case("from"))
                    && all
                        .get(at + 3)
                        .is_some_and(|t| t.eq_ignore_ascii_case("select"))
                    && only_derived_table(&all[at + 2..]);
                if token == "*" && selects_all && !in_exists && !over_subquery {
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

/// Whether `tokens`, from an opening parenthesis on, are a FROM clause of that one
/// parenthesized item (with an optional alias and column list), nothing joined to it.
fn only_derived_table(tokens: &[&str]) -> bool {
    let mut depth = 0usize;
    let mut end = None;
    for (at, &token) in tokens.iter().enumerate() {
        match token {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    end = Some(at);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(end) = end else {
        return false;
    };
    let mut rest = &tokens[end + 1..];
    if rest.first().is_some_and(|t| t.eq_ignore_ascii_case("as")) {
        rest = &rest[1..];
    }
    if rest.first().is_some_and(|t| t.chars().all(is_word_char))
        && !rest.first().is_some_and(|t| is_clause(t))
    {
        rest = &rest[1..];
    }
    if rest.first() == Some(&"(") {
        match rest.iter().position(|&t| t == ")") {
            Some(close) => rest = &rest[close + 1..],
            None => return false,
        }
    }
    !rest.first().is_some_and(|&t| {
        t == ","
            || ["join", "inner", "left", "right", "full", "cross", "natural"]
                .iter()
                .any(|j| t.eq_ignore_ascii_case(j))
    })
}

/// A keyword that may follow a FROM item (so it is no alias).
fn is_clause(token: &str) -> bool {
    [
        "where",
        "group",
        "having",
        "order",
        "limit",
        "union",
        "except",
        "intersect",
        "join",
        "inner",
        "left",
        "right",
        "full",
        "cross",
        "natural",
        "window",
        "qualify",
    ]
    .iter()
    .any(|k| token.eq_ignore_ascii_case(k))
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
    fn a_wildcard_over_a_subquery_reads_what_the_subquery_names() {
        let parquet = table("parquet");
        assert_eq!(
            kept(
                "SELECT * FROM (SELECT l_orderkey, SUM(l_tax) FROM lineitem GROUP BY l_orderkey) \
                 AS v (k, t)",
                &parquet
            ),
            Some(vec!["l_orderkey".to_string(), "l_tax".to_string()])
        );
        assert_eq!(
            kept("SELECT * FROM (SELECT * FROM lineitem) AS v", &parquet),
            None,
            "a wildcard inside still reads everything"
        );
        for joined in [
            "SELECT * FROM (SELECT l_tax FROM lineitem) AS v, lineitem",
            "SELECT * FROM (SELECT l_tax FROM lineitem) v JOIN lineitem ON true",
            "SELECT * FROM (SELECT l_tax FROM lineitem) AS v (t) LEFT JOIN lineitem ON true",
        ] {
            assert_eq!(kept(joined, &parquet), None, "{joined}");
        }
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
