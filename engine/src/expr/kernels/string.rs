//! String kernels: case mapping, character length, SQL SUBSTRING, CONCAT, TRIM, REPLACE,
//! POSITION. Outputs are built in one `StringBuilder` with capacity reserved up front; text is
//! written straight into it (`fmt::Write`), never through a per-row `String`.

use std::fmt::Write as _;

use arrow::array::{Array, Int32Array, Int64Array, StringArray, StringBuilder};
use arrow::buffer::{Buffer, ScalarBuffer};
use arrow::error::ArrowError;

use super::IntArg;
use super::StrArg;

fn map_case(
    a: &StringArray,
    ascii: fn(&u8) -> u8,
    full: fn(char, &mut StringBuilder),
) -> StringArray {
    if a.is_ascii() {
        // ASCII case mapping keeps byte lengths, so offsets and nulls are reused as they are.
        let values: Vec<u8> = a.values().iter().map(ascii).collect();
        return StringArray::new(
            a.offsets().clone(),
            Buffer::from_vec(values),
            a.nulls().cloned(),
        );
    }
    let mut b = StringBuilder::with_capacity(a.len(), a.values().len());
    for i in 0..a.len() {
        if a.is_null(i) {
            b.append_null();
            continue;
        }
        for c in a.value(i).chars() {
            full(c, &mut b);
        }
        b.append_value("");
    }
    b.finish()
}

/// `LOWER(s)`.
pub(super) fn lower(a: &StringArray) -> StringArray {
    map_case(a, u8::to_ascii_lowercase, |c, b| {
        for l in c.to_lowercase() {
            // Writing into a StringBuilder cannot fail.
            let _ = b.write_char(l);
        }
    })
}

/// `UPPER(s)`.
pub(super) fn upper(a: &StringArray) -> StringArray {
    map_case(a, u8::to_ascii_uppercase, |c, b| {
        for u in c.to_uppercase() {
            let _ = b.write_char(u);
        }
    })
}

/// `CHAR_LENGTH(s)`: characters, not bytes.
pub(super) fn char_length(a: &StringArray) -> Int32Array {
    let values: Vec<i32> = if a.is_ascii() {
        a.offsets().windows(2).map(|w| w[1] - w[0]).collect()
    } else {
        (0..a.len())
            .map(|i| {
                if a.is_null(i) {
                    0
                } else {
                    i32::try_from(a.value(i).chars().count()).unwrap_or(i32::MAX)
                }
            })
            .collect()
    };
    Int32Array::new(ScalarBuffer::from(values), a.nulls().cloned())
}

/// The byte offset of character `idx` in `s` (or `s.len()` past the end).
#[inline]
fn char_to_byte(s: &str, idx: usize) -> usize {
    if s.is_ascii() {
        idx.min(s.len())
    } else {
        s.char_indices().nth(idx).map_or(s.len(), |(b, _)| b)
    }
}

/// `SUBSTRING(s FROM start [FOR len])`, SQL-standard: the result is the characters at 1-based
/// positions in `[start, start + len)`, so `SUBSTRING('hello' FROM 0 FOR 3)` is `'he'`. A
/// negative length is an error.
pub(super) fn substring(
    s: &StrArg<'_>,
    start: &IntArg<'_>,
    len: Option<&IntArg<'_>>,
    n: usize,
) -> Result<StringArray, ArrowError> {
    let mut b = StringBuilder::with_capacity(n, 0);
    for i in 0..n {
        let (Some(text), Some(from)) = (s.get(i), start.get(i)) else {
            b.append_null();
            continue;
        };
        let end = match len.map(|l| l.get(i)) {
            None => None,
            Some(None) => {
                b.append_null();
                continue;
            }
            Some(Some(l)) if l < 0 => {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "negative substring length {l}"
                )));
            }
            Some(Some(l)) => Some(from.saturating_add(l)),
        };
        // 0-based character window [first, last).
        let first = from.max(1) - 1;
        let first = usize::try_from(first).unwrap_or(usize::MAX);
        let last = end.map(|e| usize::try_from(e.max(1) - 1).unwrap_or(usize::MAX));
        match last {
            Some(last) if last <= first => b.append_value(""),
            _ => {
                let lo = char_to_byte(text, first);
                let hi = last.map_or(text.len(), |last| {
                    lo + char_to_byte(&text[lo..], last - first)
                });
                b.append_value(&text[lo..hi]);
            }
        }
    }
    Ok(b.finish())
}

/// `CONCAT(a, b, ...)`: null if any argument is null.
pub(super) fn concat(parts: &[StrArg<'_>], n: usize) -> StringArray {
    let mut b = StringBuilder::with_capacity(n, 0);
    'rows: for i in 0..n {
        for p in parts {
            if p.get(i).is_none() {
                b.append_null();
                continue 'rows;
            }
        }
        for p in parts {
            if let Some(s) = p.get(i) {
                let _ = b.write_str(s);
            }
        }
        b.append_value("");
    }
    b.finish()
}

/// `CONCAT_WS(sep, a, b, ...)`: null arguments are skipped; a null separator gives null.
pub(super) fn concat_ws(sep: &StrArg<'_>, parts: &[StrArg<'_>], n: usize) -> StringArray {
    let mut b = StringBuilder::with_capacity(n, 0);
    for i in 0..n {
        let Some(sep) = sep.get(i) else {
            b.append_null();
            continue;
        };
        let mut first = true;
        for s in parts.iter().filter_map(|p| p.get(i)) {
            if !first {
                let _ = b.write_str(sep);
            }
            let _ = b.write_str(s);
            first = false;
        }
        b.append_value("");
    }
    b.finish()
}

/// `TRIM([BOTH|LEADING|TRAILING] [chars] FROM s)`; `chars` defaults to a space.
pub(super) fn trim(
    s: &StrArg<'_>,
    chars: Option<&StrArg<'_>>,
    leading: bool,
    trailing: bool,
    n: usize,
) -> StringArray {
    let mut b = StringBuilder::with_capacity(n, 0);
    for i in 0..n {
        let set = match chars.map(|c| c.get(i)) {
            None => Some(" "),
            Some(c) => c,
        };
        let (Some(text), Some(set)) = (s.get(i), set) else {
            b.append_null();
            continue;
        };
        let mut t = text;
        if leading {
            t = t.trim_start_matches(|c| set.contains(c));
        }
        if trailing {
            t = t.trim_end_matches(|c| set.contains(c));
        }
        b.append_value(t);
    }
    b.finish()
}

/// `REPLACE(s, from, to)`: every occurrence; an empty `from` leaves `s` unchanged.
pub(super) fn replace(s: &StrArg<'_>, from: &StrArg<'_>, to: &StrArg<'_>, n: usize) -> StringArray {
    let mut b = StringBuilder::with_capacity(n, 0);
    for i in 0..n {
        let (Some(text), Some(from), Some(to)) = (s.get(i), from.get(i), to.get(i)) else {
            b.append_null();
            continue;
        };
        if from.is_empty() {
            b.append_value(text);
            continue;
        }
        let mut last = 0;
        for (at, m) in text.match_indices(from) {
            let _ = b.write_str(&text[last..at]);
            let _ = b.write_str(to);
            last = at + m.len();
        }
        let _ = b.write_str(&text[last..]);
        b.append_value("");
    }
    b.finish()
}

/// `COUNT_CHAR(s, c)`: occurrences of the first character of `c` in `s` (0 for an empty `c`).
pub(super) fn count_char(text: &StrArg<'_>, char: &StrArg<'_>, n: usize) -> Int64Array {
    let mut out = Int64Array::builder(n);
    for i in 0..n {
        match (text.get(i), char.get(i)) {
            (Some(t), Some(c)) => match c.chars().next() {
                Some(c) if c.is_ascii() => {
                    let byte = c as u8;
                    out.append_value(t.bytes().filter(|&b| b == byte).count() as i64)
                }
                Some(c) => out.append_value(t.chars().filter(|&x| x == c).count() as i64),
                None => out.append_value(0),
            },
            _ => out.append_null(),
        }
    }
    out.finish()
}

/// `POSITION(needle IN haystack)`: 1-based character position of the first match, 0 if none.
pub(super) fn position(needle: &StrArg<'_>, haystack: &StrArg<'_>, n: usize) -> Int32Array {
    let mut out = Int32Array::builder(n);
    for i in 0..n {
        match (needle.get(i), haystack.get(i)) {
            (Some(nd), Some(h)) => {
                let pos = h.find(nd).map_or(0, |b| h[..b].chars().count() + 1);
                out.append_value(i32::try_from(pos).unwrap_or(i32::MAX));
            }
            _ => out.append_null(),
        }
    }
    out.finish()
}
