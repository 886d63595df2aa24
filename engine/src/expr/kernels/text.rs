//! Text kernels with Flink's semantics: `REGEXP_EXTRACT`, `REGEXP_REPLACE`, `REGEXP`,
//! `SPLIT_INDEX`, `INITCAP`, `LPAD`, `RPAD`.
//!
//! A regular expression is compiled once, when the expression is resolved (its pattern must be
//! a literal), and shared by every batch. Outputs are written straight into one builder per
//! batch; no per-row `String` is allocated.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanBuilder, StringArray, StringBuilder};
use arrow::error::ArrowError;
use regex::Regex;

use super::{IntArg, StrArg, Value, arg};

/// Which regular-expression function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegexOp {
    /// `REGEXP_EXTRACT(s, regex [, group])`: the group (default 1) of the first match; NULL
    /// when nothing matches or the group does not exist.
    Extract,
    /// `REGEXP_REPLACE(s, regex, replacement)`: every match replaced (`$1` names a group).
    Replace,
    /// `REGEXP(s, regex)`: whether some substring matches.
    Matches,
}

/// A compiled pattern; equal when the pattern text is equal.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRegex(Arc<Regex>);

impl CompiledRegex {
    /// Compiles `pattern` (Java-like syntax as far as the `regex` crate reads it).
    pub(crate) fn new(pattern: &str) -> Result<Self, regex::Error> {
        Regex::new(pattern).map(|r| CompiledRegex(Arc::new(r)))
    }
}

impl PartialEq for CompiledRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Runs a regular-expression function; `args[1]` is the (literal) pattern and is not read.
pub(super) fn regex(
    op: RegexOp,
    regex: &CompiledRegex,
    args: &[Value],
    n: usize,
) -> Result<ArrayRef, ArrowError> {
    let s = StrArg::new(&args[0]);
    let re = &regex.0;
    Ok(match op {
        RegexOp::Matches => {
            let mut b = BooleanBuilder::with_capacity(n);
            for i in 0..n {
                b.append_option(s.get(i).map(|v| re.is_match(v)));
            }
            Arc::new(b.finish())
        }
        RegexOp::Extract => {
            let group = args.get(2).map(IntArg::new);
            let mut b = StringBuilder::with_capacity(n, 0);
            for i in 0..n {
                let index = match &group {
                    Some(g) => g.get(i),
                    None => Some(1),
                };
                let found = match (s.get(i), index) {
                    (Some(v), Some(index)) if index >= 0 => re
                        .captures(v)
                        .and_then(|c| c.get(index as usize))
                        .map(|m| m.as_str()),
                    _ => None,
                };
                b.append_option(found);
            }
            Arc::new(b.finish())
        }
        RegexOp::Replace => {
            let replacement = StrArg::new(arg(args, 2)?);
            let mut b = StringBuilder::with_capacity(n, 0);
            for i in 0..n {
                match (s.get(i), replacement.get(i)) {
                    (Some(v), Some(r)) => {
                        // `replace_all` borrows when nothing matches.
                        b.append_value(re.replace_all(v, r));
                    }
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// `SPLIT_INDEX(s, sep, index)`: the `index`-th (0-based) piece of `s` split on `sep`; NULL
/// when the index is negative or out of range, or any argument is NULL.
pub(super) fn split_index(
    s: &StrArg<'_>,
    sep: &StrArg<'_>,
    index: &IntArg<'_>,
    n: usize,
) -> StringArray {
    let mut b = StringBuilder::with_capacity(n, 0);
    for i in 0..n {
        let piece = match (s.get(i), sep.get(i), index.get(i)) {
            (Some(v), Some(sep), Some(index)) if index >= 0 && !sep.is_empty() => {
                v.split(sep).nth(index as usize)
            }
            (Some(v), Some(""), Some(0)) => Some(v),
            _ => None,
        };
        b.append_option(piece);
    }
    b.finish()
}

/// `INITCAP(s)`: the first character of every word upper case, the others lower case; a word
/// is a run of alphanumeric characters.
pub(super) fn initcap(a: &StringArray) -> StringArray {
    let mut b = StringBuilder::with_capacity(a.len(), a.values().len());
    for i in 0..a.len() {
        if a.is_null(i) {
            b.append_null();
            continue;
        }
        let mut in_word = false;
        for c in a.value(i).chars() {
            if c.is_alphanumeric() {
                if in_word {
                    for l in c.to_lowercase() {
                        let _ = b.write_char(l);
                    }
                } else {
                    for u in c.to_uppercase() {
                        let _ = b.write_char(u);
                    }
                }
                in_word = true;
            } else {
                let _ = b.write_char(c);
                in_word = false;
            }
        }
        b.append_value("");
    }
    b.finish()
}

/// `LPAD` / `RPAD(s, len, pad)`: `s` padded with repetitions of `pad` to `len` characters, or
/// cut to `len` characters when longer. NULL for a negative length, or an empty pad when
/// padding is needed.
pub(super) fn pad(
    s: &StrArg<'_>,
    len: &IntArg<'_>,
    padding: &StrArg<'_>,
    left: bool,
    n: usize,
) -> StringArray {
    let mut b = StringBuilder::with_capacity(n, 0);
    for i in 0..n {
        let (Some(v), Some(len), Some(p)) = (s.get(i), len.get(i), padding.get(i)) else {
            b.append_null();
            continue;
        };
        let Ok(len) = usize::try_from(len) else {
            b.append_null();
            continue;
        };
        let chars = v.chars().count();
        if chars >= len {
            let end = v.char_indices().nth(len).map_or(v.len(), |(at, _)| at);
            b.append_value(&v[..end]);
            continue;
        }
        if p.is_empty() {
            b.append_null();
            continue;
        }
        let missing = len - chars;
        if !left {
            b.write_str(v).ok();
        }
        for c in p.chars().cycle().take(missing) {
            let _ = b.write_char(c);
        }
        if left {
            b.write_str(v).ok();
        }
        b.append_value("");
    }
    b.finish()
}

/// The Utf8 array of a value (helper for tests).
#[cfg(test)]
fn strings(a: &ArrayRef) -> Vec<Option<String>> {
    use arrow::array::AsArray;
    a.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};

    use super::*;
    use crate::expr::physical::ScalarArray;

    fn column(values: Vec<Option<&str>>) -> Value {
        Value::Array(Arc::new(StringArray::from(values)))
    }

    fn scalar_str(v: &str) -> Value {
        Value::Scalar(ScalarArray::new(Arc::new(StringArray::from(vec![v]))))
    }

    fn scalar_int(v: i64) -> Value {
        Value::Scalar(ScalarArray::new(Arc::new(Int64Array::from(vec![v]))))
    }

    #[test]
    fn regexp_extract_groups_and_misses() {
        let re = CompiledRegex::new(r"(\d+)-(\d+)").unwrap();
        let args = [
            column(vec![Some("10-20"), Some("none"), None]),
            scalar_str(""),
            scalar_int(2),
        ];
        let out = regex(RegexOp::Extract, &re, &args, 3).unwrap();
        assert_eq!(strings(&out), vec![Some("20".into()), None, None]);
        let args = [column(vec![Some("10-20")]), scalar_str(""), scalar_int(7)];
        let out = regex(RegexOp::Extract, &re, &args, 1).unwrap();
        assert_eq!(strings(&out), vec![None]);
    }

    #[test]
    fn regexp_replace_uses_groups() {
        let re = CompiledRegex::new(r"(\w+)@(\w+)").unwrap();
        let args = [
            column(vec![Some("a@b c@d"), Some("plain")]),
            scalar_str(""),
            scalar_str("$2@$1"),
        ];
        let out = regex(RegexOp::Replace, &re, &args, 2).unwrap();
        assert_eq!(
            strings(&out),
            vec![Some("b@a d@c".into()), Some("plain".into())]
        );
    }

    #[test]
    fn split_pad_initcap() {
        let s = StringArray::from(vec![Some("a,b,,c"), None]);
        let sep = StringArray::from(vec![","]);
        let out = split_index(
            &StrArg::Array(&s),
            &StrArg::Scalar(Some(",")),
            &IntArg::Scalar(Some(3)),
            2,
        );
        assert_eq!(out.value(0), "c");
        assert!(out.is_null(1));
        assert_eq!(sep.len(), 1);
        let out = split_index(
            &StrArg::Array(&s),
            &StrArg::Scalar(Some(",")),
            &IntArg::Scalar(Some(4)),
            1,
        );
        assert!(out.is_null(0));

        let v = StringArray::from(vec!["hi", "hello"]);
        let out = pad(
            &StrArg::Array(&v),
            &IntArg::Scalar(Some(4)),
            &StrArg::Scalar(Some("?!")),
            true,
            2,
        );
        assert_eq!(out.value(0), "?!hi");
        assert_eq!(out.value(1), "hell");
        let out = pad(
            &StrArg::Array(&v),
            &IntArg::Scalar(Some(5)),
            &StrArg::Scalar(Some("xy")),
            false,
            1,
        );
        assert_eq!(out.value(0), "hixyx");

        let words = StringArray::from(vec!["hello wORLD-foo 9lives", "ÉCOLE été"]);
        let out = initcap(&words);
        assert_eq!(out.value(0), "Hello World-Foo 9lives");
        assert_eq!(out.value(1), "École Été");
    }
}
