//! `FOR SYSTEM_TIME AS OF <time attribute>` on a table reference (Flink's temporal and lookup
//! joins).
//!
//! `sqlparser`'s generic dialect does not read the clause, so the script parser
//! (`sql::parser`) hands it to [`cut`] before parsing: the clause is blanked out of the text
//! (positions stay put) and remembered with the end of the table name it follows. Once the
//! statement is parsed, [`attach`] puts it back where `sqlparser` itself would keep it: as the
//! `version` of that `TableFactor::Table`. The planner reads it from there (`sql::lookup_join`).
//!
//! The clause's operand must be a column reference (`o.proc_time`), as Flink requires of a
//! time attribute; anything else is refused here with its line and column. A clause that does
//! not end up on a table of a `FROM` clause (e.g. after a subquery) is refused too.

use sqlparser::ast::{
    Expr as SqlExpr, Ident, Query, SetExpr, Statement, TableFactor, TableVersion, TableWithJoins,
};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::{Error, Result};

/// One `FOR SYSTEM_TIME AS OF …` clause found in a statement's tokens.
#[derive(Debug, Clone)]
pub(crate) struct SystemTimeClause {
    /// Where `FOR` starts.
    at: Location,
    /// Where the table name before the clause ends.
    table_end: Location,
    /// The time attribute, as the parser would have read it (with its spans).
    expr: SqlExpr,
    attached: bool,
}

fn position(at: Location) -> String {
    format!("line {}, column {}", at.line, at.column)
}

fn is_keyword(token: &TokenWithSpan, keyword: Keyword) -> bool {
    matches!(&token.token, Token::Word(w) if w.keyword == keyword && w.quote_style.is_none())
}

/// Finds the clauses in `significant` (the statement's tokens without whitespace), returns
/// them and pushes the byte ranges to blank (via `at`/`at_end`, token → byte offset).
pub(crate) fn cut(
    significant: &[&TokenWithSpan],
    at: &dyn Fn(&TokenWithSpan) -> usize,
    at_end: &dyn Fn(&TokenWithSpan) -> usize,
    blanks: &mut Vec<(usize, usize)>,
) -> Result<Vec<SystemTimeClause>> {
    let mut clauses = Vec::new();
    let mut i = 0;
    while i + 3 < significant.len() {
        let window = &significant[i..i + 4];
        let found = is_keyword(window[0], Keyword::FOR)
            && is_keyword(window[1], Keyword::SYSTEM_TIME)
            && is_keyword(window[2], Keyword::AS)
            && is_keyword(window[3], Keyword::OF);
        if !found {
            i += 1;
            continue;
        }
        let start = window[0].span.start;
        let table = match i.checked_sub(1).map(|j| significant[j]) {
            Some(t) if matches!(t.token, Token::Word(_)) => t,
            _ => {
                return Err(Error::sql(
                    position(start),
                    "FOR SYSTEM_TIME AS OF must follow a table name (a temporal join of a \
                     subquery or view is not supported yet)",
                ));
            }
        };
        // The operand: `name` or `qualifier.name`.
        let mut idents = Vec::new();
        let mut j = i + 4;
        loop {
            match significant.get(j).map(|t| &t.token) {
                Some(Token::Word(w))
                    if w.quote_style.is_some()
                        || !matches!(w.keyword, Keyword::AS | Keyword::ON | Keyword::WHERE) =>
                {
                    idents.push(Ident {
                        value: w.value.clone(),
                        quote_style: w.quote_style,
                        span: significant[j].span,
                    });
                }
                _ => break,
            }
            if matches!(
                significant.get(j + 1).map(|t| &t.token),
                Some(Token::Period)
            ) {
                j += 2;
            } else {
                j += 1;
                break;
            }
        }
        // A function call or arithmetic after the name is no time attribute.
        let operand_ok = !idents.is_empty()
            && !matches!(
                significant.get(j).map(|t| &t.token),
                Some(
                    Token::LParen
                        | Token::Period
                        | Token::Plus
                        | Token::Minus
                        | Token::Mul
                        | Token::Div
                        | Token::DoubleColon
                )
            );
        if !operand_ok {
            let place = significant.get(i + 4).map_or(start, |t| t.span.start);
            return Err(Error::sql(
                position(place),
                "FOR SYSTEM_TIME AS OF expects a time attribute column of the probe side \
                 (e.g. `FOR SYSTEM_TIME AS OF o.proc_time`)",
            ));
        }
        let expr = if idents.len() == 1 {
            SqlExpr::Identifier(idents.remove(0))
        } else {
            SqlExpr::CompoundIdentifier(idents)
        };
        blanks.push((at(window[0]), at_end(significant[j - 1])));
        clauses.push(SystemTimeClause {
            at: start,
            table_end: table.span.end,
            expr,
            attached: false,
        });
        i = j;
    }
    Ok(clauses)
}

/// Puts each clause back on the table it follows; an error names a clause that has no such
/// table in a `FROM` clause.
pub(crate) fn attach(statement: &mut Statement, mut clauses: Vec<SystemTimeClause>) -> Result<()> {
    if clauses.is_empty() {
        return Ok(());
    }
    attach_statement(statement, &mut clauses);
    match clauses.iter().find(|c| !c.attached) {
        Some(clause) => Err(Error::sql(
            position(clause.at),
            "FOR SYSTEM_TIME AS OF is supported only on a table joined in a FROM clause",
        )),
        None => Ok(()),
    }
}

fn attach_statement(statement: &mut Statement, clauses: &mut [SystemTimeClause]) {
    match statement {
        Statement::Query(query) => attach_query(query, clauses),
        Statement::Insert(insert) => {
            if let Some(source) = &mut insert.source {
                attach_query(source, clauses);
            }
        }
        Statement::CreateView(view) => attach_query(&mut view.query, clauses),
        Statement::Explain { statement, .. } => attach_statement(statement, clauses),
        _ => {}
    }
}

fn attach_query(query: &mut Query, clauses: &mut [SystemTimeClause]) {
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            attach_query(&mut cte.query, clauses);
        }
    }
    attach_set_expr(&mut query.body, clauses);
}

fn attach_set_expr(body: &mut SetExpr, clauses: &mut [SystemTimeClause]) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.from {
                attach_from(item, clauses);
            }
        }
        SetExpr::Query(query) => attach_query(query, clauses),
        SetExpr::SetOperation { left, right, .. } => {
            attach_set_expr(left, clauses);
            attach_set_expr(right, clauses);
        }
        _ => {}
    }
}

fn attach_from(item: &mut TableWithJoins, clauses: &mut [SystemTimeClause]) {
    attach_factor(&mut item.relation, clauses);
    for join in &mut item.joins {
        attach_factor(&mut join.relation, clauses);
    }
}

fn attach_factor(factor: &mut TableFactor, clauses: &mut [SystemTimeClause]) {
    match factor {
        TableFactor::Table { name, version, .. } => {
            let Some(end) = name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .map(|i| i.span.end)
            else {
                return;
            };
            if let Some(clause) = clauses
                .iter_mut()
                .find(|c| !c.attached && c.table_end == end)
            {
                clause.attached = true;
                *version = Some(TableVersion::ForSystemTimeAsOf(clause.expr.clone()));
            }
        }
        TableFactor::Derived { subquery, .. } => attach_query(subquery, clauses),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => attach_from(table_with_joins, clauses),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::parser::{ParsedStatement, parse_script};
    use sqlparser::ast::{SetExpr, Statement, TableFactor, TableVersion};

    fn versions(sql: &str) -> Vec<String> {
        let parsed = parse_script(sql).unwrap();
        let ParsedStatement::Sql { statement, .. } = &parsed[0].statement else {
            panic!("a SQL statement");
        };
        let Statement::Query(query) = statement.as_ref() else {
            panic!("a query");
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            panic!("a select");
        };
        let mut out = Vec::new();
        for item in &select.from {
            for factor in
                std::iter::once(&item.relation).chain(item.joins.iter().map(|j| &j.relation))
            {
                if let TableFactor::Table {
                    name,
                    version,
                    alias,
                    ..
                } = factor
                {
                    let alias = alias.as_ref().map(|a| a.name.value.clone());
                    out.push(match version {
                        Some(TableVersion::ForSystemTimeAsOf(e)) => {
                            format!("{name} AS {alias:?} @ {e}")
                        }
                        _ => format!("{name} AS {alias:?}"),
                    });
                }
            }
        }
        out
    }

    #[test]
    fn the_clause_lands_on_its_table() {
        assert_eq!(
            versions(
                "SELECT * FROM o\n  JOIN `side` FOR SYSTEM_TIME AS OF o.p AS s ON o.k = s.k\n  \
                 LEFT JOIN t FOR SYSTEM_TIME AS OF p ON o.k = t.k"
            ),
            vec![
                "o AS None".to_string(),
                "`side` AS Some(\"s\") @ o.p".to_string(),
                "t AS None @ p".to_string(),
            ]
        );
    }

    #[test]
    fn other_operands_and_places_are_refused_with_their_position() {
        let err =
            parse_script("SELECT * FROM o JOIN d FOR SYSTEM_TIME AS OF PROCTIME() ON o.k = d.k")
                .unwrap_err()
                .to_string();
        assert!(err.contains("line 1, column 46"), "{err}");
        assert!(err.contains("time attribute column"), "{err}");
        let err = parse_script("SELECT * FROM (SELECT 1) FOR SYSTEM_TIME AS OF o.p")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1, column 26"), "{err}");
        assert!(err.contains("must follow a table name"), "{err}");
    }
}
