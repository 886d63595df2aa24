//! Flink's legacy group windows: `GROUP BY [keys,] TUMBLE|HOP|SESSION(time, INTERVAL …)` with
//! `TUMBLE_START(…)`, `SESSION_END(…)`, `HOP_ROWTIME(…)`, … in the select list.
//!
//! They mean the same as the window TVFs, so [`rewrite`] turns such a `SELECT` into its TVF
//! form and the planner plans that: the `FROM` table becomes `TABLE(SESSION(TABLE t,
//! DESCRIPTOR(time), INTERVAL …))` under the same alias, the group window becomes `window_start,
//! window_end`, and the auxiliary functions become `window_start`, `window_end` and
//! `window_time`. The rewrite goes through SQL text, which keeps every other clause as written.
//! Group windows need a single table in `FROM` (as the TVFs here do); auxiliary functions are
//! recognised as whole select items.

use sqlparser::ast::{Expr as SqlExpr, GroupByExpr, Select, SelectItem, SetExpr, TableFactor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::expr::{function_args, function_name, not_supported};
use crate::{Error, Result};

const WINDOWS: [&str; 3] = ["TUMBLE", "HOP", "SESSION"];

/// The TVF form of `select` if it groups by a legacy group window, else `None`.
pub(super) fn rewrite(select: &Select) -> Result<Option<Select>> {
    let GroupByExpr::Expressions(group_by, _) = &select.group_by else {
        return Ok(None);
    };
    let Some(position) = group_by.iter().position(
        |e| matches!(e, SqlExpr::Function(f) if WINDOWS.contains(&function_name(f).as_str())),
    ) else {
        return Ok(None);
    };
    let SqlExpr::Function(window) = &group_by[position] else {
        return Ok(None);
    };
    let kind = function_name(window);
    let [from] = select.from.as_slice() else {
        return Err(not_supported(&format!(
            "a group window ({kind}) over several tables (use a window TVF)"
        )));
    };
    let TableFactor::Table { name, alias, .. } = &from.relation else {
        return Err(not_supported(&format!(
            "a group window ({kind}) over a subquery (use a window TVF)"
        )));
    };
    if !from.joins.is_empty() {
        return Err(not_supported(&format!(
            "a group window ({kind}) over a join (use a window TVF)"
        )));
    }
    let args = function_args(window)?;
    let time = match args.first().copied().flatten() {
        Some(SqlExpr::Identifier(ident)) => ident.value.clone(),
        Some(SqlExpr::CompoundIdentifier(parts)) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        _ => {
            return Err(Error::expr(format!(
                "{kind}: the first argument must be a time column, in {window}"
            )));
        }
    };
    let intervals: Vec<String> = args[1..]
        .iter()
        .map(|a| a.map(ToString::to_string).unwrap_or_default())
        .collect();
    let mut items = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
            other => {
                items.push(other.to_string());
                continue;
            }
        };
        let auxiliary = match expr {
            SqlExpr::Function(f) => {
                let name = function_name(f);
                match name.rsplit_once('_') {
                    Some((prefix, suffix)) if WINDOWS.contains(&prefix) => match suffix {
                        "START" => Some("window_start"),
                        "END" => Some("window_end"),
                        "ROWTIME" | "PROCTIME" => Some("window_time"),
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        };
        items.push(match (auxiliary, alias) {
            (Some(column), Some(alias)) => format!("{column} AS {alias}"),
            (Some(column), None) => column.to_string(),
            (None, _) => item.to_string(),
        });
    }
    let mut keys: Vec<String> = group_by
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != position)
        .map(|(_, e)| e.to_string())
        .collect();
    keys.push("window_start".into());
    keys.push("window_end".into());
    let alias = alias.as_ref().map(|a| format!(" {a}")).unwrap_or_default();
    let mut text = format!(
        "SELECT {} FROM TABLE({kind}({name}, DESCRIPTOR({time}), {})){alias}",
        items.join(", "),
        intervals.join(", ")
    );
    if let Some(selection) = &select.selection {
        text.push_str(&format!(" WHERE {selection}"));
    }
    text.push_str(&format!(" GROUP BY {}", keys.join(", ")));
    if let Some(having) = &select.having {
        text.push_str(&format!(" HAVING {having}"));
    }
    let query = Parser::new(&GenericDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| Error::Internal(format!("rewriting a group window into '{text}': {e}")))?;
    match *query.body {
        SetExpr::Select(rewritten) => Ok(Some(*rewritten)),
        other => Err(Error::Internal(format!(
            "a group window rewrite gave '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(sql: &str) -> Select {
        let query = Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_query())
            .unwrap();
        match *query.body {
            SetExpr::Select(s) => *s,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_session_group_window_becomes_a_session_tvf() {
        let rewritten = rewrite(&select(
            "SELECT B.bidder, count(*) AS n, SESSION_START(B.dateTime, INTERVAL '10' SECOND) AS s, \
             SESSION_END(B.dateTime, INTERVAL '10' SECOND) FROM bid B WHERE price > 1 \
             GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND) HAVING count(*) > 2",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            rewritten.to_string(),
            "SELECT B.bidder, count(*) AS n, window_start AS s, window_end FROM \
             TABLE(SESSION(bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) B WHERE price > 1 \
             GROUP BY B.bidder, window_start, window_end HAVING count(*) > 2"
        );
    }

    #[test]
    fn plain_group_by_is_left_alone_and_joins_are_refused() {
        assert!(
            rewrite(&select("SELECT a, count(*) FROM t GROUP BY a"))
                .unwrap()
                .is_none()
        );
        let err = rewrite(&select(
            "SELECT count(*) FROM t JOIN u ON t.a = u.a GROUP BY TUMBLE(t.ts, INTERVAL '1' MINUTE)",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("a group window (TUMBLE) over a join"), "{err}");
    }
}
