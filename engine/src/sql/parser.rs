//! Splits a Flink SQL script into statements and parses each with `sqlparser`.
//!
//! `sqlparser` 0.64 (generic dialect) parses most of Flink's syntax; what it does not parse is
//! handled here, before it sees the text, without moving anything: the parts it cannot read
//! are blanked out (replaced by spaces, newlines kept), so every line/column in a parse error
//! still points into the original script. The pre-processing covers:
//! - `SET 'key' = 'value'`, `EXECUTE STATEMENT SET BEGIN … END;` and `BEGIN STATEMENT SET;` /
//!   `END;` (recognised from tokens);
//! - in `CREATE TABLE`, computed columns `name AS expr` and `WATERMARK FOR col AS expr` (cut
//!   out of the column list; their expressions are parsed on their own);
//! - the `TABLE` keyword before a table argument of a window TVF
//!   (`TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))`);
//! - `FOR SYSTEM_TIME AS OF <column>` after a table name (`sql::system_time`: cut out, then
//!   put back on the parsed table as its `version`).

use sqlparser::ast::{Expr as SqlExpr, Statement};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::{Error, Result};

/// Where a statement starts in the script (1-based), for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A computed column of a `CREATE TABLE`: `name AS expr`, after `after` physical columns.
#[derive(Debug, Clone)]
pub struct ComputedColumn {
    pub name: String,
    pub expr: SqlExpr,
    /// How many physical columns precede it in the declaration.
    pub after: usize,
}

/// `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone)]
pub struct WatermarkClause {
    pub column: String,
    pub expr: SqlExpr,
}

/// One statement of a script.
#[derive(Debug, Clone)]
pub enum ParsedStatement {
    /// `SET 'key' = 'value'`.
    Set { key: String, value: String },
    /// `EXECUTE STATEMENT SET BEGIN` / `BEGIN STATEMENT SET`.
    BeginStatementSet,
    /// `END` closing a statement set.
    EndStatementSet,
    /// Anything `sqlparser` parsed, with the Flink-only parts of a `CREATE TABLE`.
    Sql {
        statement: Box<Statement>,
        computed: Vec<ComputedColumn>,
        watermark: Option<Box<WatermarkClause>>,
    },
}

/// A statement with where it starts.
#[derive(Debug, Clone)]
pub struct Located {
    pub position: Position,
    pub statement: ParsedStatement,
}

/// Parses a whole script (statements separated by `;`, `--` and `/* */` comments).
pub fn parse_script(script: &str) -> Result<Vec<Located>> {
    let tokens = tokenize(script)?;
    let starts = line_starts(script);
    let mut out = Vec::new();
    let mut current: Vec<&TokenWithSpan> = Vec::new();
    for token in &tokens {
        match &token.token {
            Token::SemiColon => {
                if !current.is_empty() {
                    parse_statement(script, &starts, &current, &mut out)?;
                }
                current.clear();
            }
            Token::Whitespace(_) if current.is_empty() => {}
            Token::EOF => {}
            _ => current.push(token),
        }
    }
    if current
        .iter()
        .any(|t| !matches!(t.token, Token::Whitespace(_)))
    {
        parse_statement(script, &starts, &current, &mut out)?;
    }
    Ok(out)
}

fn tokenize(text: &str) -> Result<Vec<TokenWithSpan>> {
    Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| {
            Error::sql(
                format!("line {}, column {}", e.location.line, e.location.column),
                e.message.clone(),
            )
        })
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The byte offset of a 1-based line/column (columns count characters).
fn offset(text: &str, starts: &[usize], line: u64, column: u64) -> usize {
    let Some(&start) = starts.get(line.saturating_sub(1) as usize) else {
        return text.len();
    };
    text[start..]
        .char_indices()
        .nth(column.saturating_sub(1) as usize)
        .map_or(text.len(), |(i, _)| start + i)
}

fn word(token: &TokenWithSpan) -> Option<&str> {
    match &token.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.as_str()),
        _ => None,
    }
}

fn is_word(token: Option<&&TokenWithSpan>, expected: &str) -> bool {
    token
        .and_then(|t| word(t))
        .is_some_and(|w| w.eq_ignore_ascii_case(expected))
}

fn parse_statement(
    script: &str,
    starts: &[usize],
    tokens: &[&TokenWithSpan],
    out: &mut Vec<Located>,
) -> Result<()> {
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .copied()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let Some(first) = significant.first() else {
        return Ok(());
    };
    let position = Position {
        line: first.span.start.line,
        column: first.span.start.column,
    };
    let location = format!("statement at {position}");
    // EXECUTE STATEMENT SET BEGIN <first statement> / BEGIN STATEMENT SET
    if is_word(significant.first(), "EXECUTE")
        && is_word(significant.get(1), "STATEMENT")
        && is_word(significant.get(2), "SET")
        && is_word(significant.get(3), "BEGIN")
    {
        out.push(Located {
            position,
            statement: ParsedStatement::BeginStatementSet,
        });
        let begin = significant[3];
        let rest: Vec<&TokenWithSpan> = tokens
            .iter()
            .copied()
            .skip_while(|t| !std::ptr::eq(*t, begin))
            .skip(1)
            .skip_while(|t| matches!(t.token, Token::Whitespace(_)))
            .collect();
        if !rest.is_empty() {
            parse_statement(script, starts, &rest, out)?;
        }
        return Ok(());
    }
    if significant.len() == 3
        && is_word(significant.first(), "BEGIN")
        && is_word(significant.get(1), "STATEMENT")
        && is_word(significant.get(2), "SET")
    {
        out.push(Located {
            position,
            statement: ParsedStatement::BeginStatementSet,
        });
        return Ok(());
    }
    if significant.len() == 1 && is_word(significant.first(), "END") {
        out.push(Located {
            position,
            statement: ParsedStatement::EndStatementSet,
        });
        return Ok(());
    }
    if is_word(significant.first(), "SET") {
        return match significant.as_slice() {
            [_, key, eq, value] if matches!(eq.token, Token::Eq) => {
                match (&key.token, &value.token) {
                    (Token::SingleQuotedString(k), Token::SingleQuotedString(v)) => {
                        out.push(Located {
                            position,
                            statement: ParsedStatement::Set {
                                key: k.clone(),
                                value: v.clone(),
                            },
                        });
                        Ok(())
                    }
                    _ => Err(Error::sql(
                        location,
                        "SET expects quoted key and value: SET 'key' = 'value'",
                    )),
                }
            }
            _ => Err(Error::sql(
                location,
                "SET expects SET 'key' = 'value' (listing settings is not supported yet)",
            )),
        };
    }

    // Statement text padded so that positions (line, column) match the script: an empty line
    // for each line before the statement's, and a space for each character before it on its
    // line. Padding every character of the script before it made the parser skip a whitespace
    // token per character, quadratic in the script: a 2 KB init script of eight CREATE TABLEs
    // took 13 ms, most of it touching fresh memory for those tokens.
    let start = offset(script, starts, position.line, position.column);
    let last = tokens.last().map_or(position, |t| Position {
        line: t.span.end.line,
        column: t.span.end.column,
    });
    let end = offset(script, starts, last.line, last.column).max(start);
    let line_start = script[..start].rfind('\n').map_or(0, |i| i + 1);
    let mut text = "\n".repeat(script[..line_start].matches('\n').count());
    text.extend(script[line_start..start].chars().map(|_| ' '));
    let body_start = text.len();
    text.push_str(&script[start..end]);

    let mut computed = Vec::new();
    let mut watermark = None;
    let is_create_table = is_word(significant.first(), "CREATE")
        && (is_word(significant.get(1), "TABLE")
            || (is_word(significant.get(1), "TEMPORARY") && is_word(significant.get(2), "TABLE")));
    // Token offsets are absolute in `text` too, as it has the same layout as the script.
    let text_starts = line_starts(&text);
    let at =
        |t: &TokenWithSpan| offset(&text, &text_starts, t.span.start.line, t.span.start.column);
    let at_end =
        |t: &TokenWithSpan| offset(&text, &text_starts, t.span.end.line, t.span.end.column);
    let mut blanks: Vec<(usize, usize)> = Vec::new();
    if is_create_table {
        cut_flink_columns(
            &text,
            &significant,
            &at,
            &at_end,
            &mut computed,
            &mut watermark,
            &mut blanks,
        )?;
    }
    // `TABLE name` as a table-function argument: drop the keyword.
    for pair in significant.windows(3) {
        let before = matches!(pair[0].token, Token::LParen | Token::Comma);
        let is_table = matches!(&pair[1].token, Token::Word(w) if w.keyword == Keyword::TABLE && w.quote_style.is_none());
        let named = matches!(pair[2].token, Token::Word(_));
        if before && is_table && named {
            blanks.push((at(pair[1]), at_end(pair[1])));
        }
    }
    // `FOR SYSTEM_TIME AS OF …`: cut out here, put back on its table after parsing.
    let system_time = super::system_time::cut(&significant, &at, &at_end, &mut blanks)?;
    let mut bytes = text.into_bytes();
    for (from, to) in blanks {
        for b in &mut bytes[from.max(body_start)..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Only ASCII bytes of whole tokens were replaced, and multi-byte characters inside them
    // are replaced byte by byte with spaces: the result is valid UTF-8, though a blanked
    // multi-byte character becomes several spaces (columns after it on that line shift).
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let statements = Parser::new(&GenericDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| Error::sql(location.clone(), e.to_string()))?;
    let mut statements = statements.into_iter();
    let (Some(mut statement), None) = (statements.next(), statements.next()) else {
        return Err(Error::sql(location, "expected exactly one statement"));
    };
    super::system_time::attach(&mut statement, system_time)?;
    out.push(Located {
        position,
        statement: ParsedStatement::Sql {
            statement: Box::new(statement),
            computed,
            watermark,
        },
    });
    Ok(())
}

/// Finds computed columns and the watermark clause in a `CREATE TABLE` column list, parses
/// their expressions and records the byte ranges to blank out (the element and one comma).
fn cut_flink_columns(
    text: &str,
    significant: &[&TokenWithSpan],
    at: &dyn Fn(&TokenWithSpan) -> usize,
    at_end: &dyn Fn(&TokenWithSpan) -> usize,
    computed: &mut Vec<ComputedColumn>,
    watermark: &mut Option<Box<WatermarkClause>>,
    blanks: &mut Vec<(usize, usize)>,
) -> Result<()> {
    let Some(open) = significant
        .iter()
        .position(|t| matches!(t.token, Token::LParen))
    else {
        return Ok(());
    };
    // Elements at depth 1: (first token index, end index exclusive, separating comma index).
    let mut elements: Vec<(usize, usize, Option<usize>)> = Vec::new();
    let mut depth = 0usize;
    let mut element_start = open + 1;
    for (i, token) in significant.iter().enumerate().skip(open) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    elements.push((element_start, i, None));
                    break;
                }
            }
            Token::Comma if depth == 1 => {
                elements.push((element_start, i, Some(i)));
                element_start = i + 1;
            }
            _ => {}
        }
    }
    let mut physical = 0usize;
    let count = elements.len();
    for (index, &(first, end, comma)) in elements.iter().enumerate() {
        if first >= end {
            continue;
        }
        let tokens = &significant[first..end];
        let head = word(tokens[0]).map(str::to_ascii_uppercase);
        let is_watermark = head.as_deref() == Some("WATERMARK") && is_word(tokens.get(1), "FOR");
        let is_computed = tokens.len() > 2
            && matches!(tokens[0].token, Token::Word(_))
            && matches!(&tokens[1].token, Token::Word(w) if w.keyword == Keyword::AS && w.quote_style.is_none());
        if !is_watermark && !is_computed {
            if !matches!(
                head.as_deref(),
                Some("PRIMARY" | "CONSTRAINT" | "UNIQUE" | "CHECK" | "FOREIGN")
            ) {
                physical += 1;
            }
            continue;
        }
        let (name, expr_first) = if is_watermark {
            let Some(column) = tokens.get(2).and_then(|t| match &t.token {
                Token::Word(w) => Some(w.value.clone()),
                _ => None,
            }) else {
                return Err(Error::sql(
                    format!(
                        "line {}, column {}",
                        tokens[0].span.start.line, tokens[0].span.start.column
                    ),
                    "WATERMARK FOR expects a column name",
                ));
            };
            if !is_word(tokens.get(3), "AS") {
                return Err(Error::sql(
                    format!(
                        "line {}, column {}",
                        tokens[0].span.start.line, tokens[0].span.start.column
                    ),
                    format!("expected AS after WATERMARK FOR {column}"),
                ));
            }
            (column, 4)
        } else {
            let Token::Word(w) = &tokens[0].token else {
                continue;
            };
            (w.value.clone(), 2)
        };
        let Some(expr_token) = tokens.get(expr_first) else {
            return Err(Error::sql(
                format!(
                    "line {}, column {}",
                    tokens[0].span.start.line, tokens[0].span.start.column
                ),
                format!("missing expression for '{name}'"),
            ));
        };
        let from = at(expr_token);
        let to = at_end(tokens[tokens.len() - 1]);
        let padded: String = text[..from]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .chain(text[from..to].chars())
            .collect();
        let expr = Parser::new(&GenericDialect {})
            .try_with_sql(&padded)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| Error::sql(format!("expression of '{name}'"), e.to_string()))?;
        if is_watermark {
            *watermark = Some(Box::new(WatermarkClause { column: name, expr }));
        } else {
            computed.push(ComputedColumn {
                name,
                expr,
                after: physical,
            });
        }
        // Blank the element and a comma next to it.
        let mut blank_from = at(tokens[0]);
        let mut blank_to = to;
        if index > 0 {
            if let Some(previous_comma) = elements[index - 1].2 {
                blank_from = at(significant[previous_comma]);
            }
        } else if let Some(comma) = comma
            && index + 1 < count
        {
            blank_to = at_end(significant[comma]);
        }
        blanks.push((blank_from, blank_to));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_ddl_is_preprocessed() {
        let script = "SET 'a' = 'b';\n-- c\nCREATE TABLE t (\n x BIGINT,\n ts AS TO_TIMESTAMP_LTZ(x, 3),\n WATERMARK FOR ts AS ts - INTERVAL '4' SECOND\n) WITH ('connector' = 'datagen');\nSELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND));";
        let statements = parse_script(script).unwrap();
        assert_eq!(statements.len(), 3);
        let ParsedStatement::Sql {
            computed,
            watermark,
            ..
        } = &statements[1].statement
        else {
            panic!("expected a SQL statement");
        };
        assert_eq!(computed[0].name, "ts");
        assert_eq!(computed[0].after, 1);
        assert_eq!(watermark.as_ref().unwrap().column, "ts");
        assert_eq!(statements[1].position.line, 3);
    }

    #[test]
    fn errors_point_into_the_script() {
        let err = parse_script("SELECT 1;\nSELECT * FROM WHERE;").unwrap_err();
        assert!(err.to_string().contains("Line: 2"), "{err}");
        // A statement after others on its line, and after multi-byte text, keeps its column.
        let err = parse_script("SELECT 'é';\n-- a comment ü\nSELECT 2;  SELECT 3 FROM WHERE;")
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("statement at line 3, column 12"),
            "{message}"
        );
        assert!(message.contains("Line: 3, Column: 26"), "{message}");
    }
}
