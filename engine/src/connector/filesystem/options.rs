//! The options of the `csv` format, parsed from the spec's option map and validated once.
//!
//! Keys follow Flink's `csv` format (`csv.field-delimiter`, `csv.quote-character`, …) plus one
//! Sluice extension, `csv.header`. The source and the sink share the resolved [`CsvOptions`];
//! options that only matter to one side are accepted and ignored by the other. An unknown
//! `csv.*` key is an [`Error::Config`] that suggests the nearest known key, so a typo fails the
//! job when it is built rather than being ignored silently. Keys outside `csv.*` belong to other
//! layers (the connector itself, other formats) and are not looked at here.

use std::collections::BTreeMap;

use crate::{Error, Result};

const FIELD_DELIMITER: &str = "csv.field-delimiter";
const QUOTE_CHARACTER: &str = "csv.quote-character";
const DISABLE_QUOTE_CHARACTER: &str = "csv.disable-quote-character";
const ALLOW_COMMENTS: &str = "csv.allow-comments";
const IGNORE_PARSE_ERRORS: &str = "csv.ignore-parse-errors";
const ARRAY_ELEMENT_DELIMITER: &str = "csv.array-element-delimiter";
const ESCAPE_CHARACTER: &str = "csv.escape-character";
const NULL_LITERAL: &str = "csv.null-literal";
const WRITE_BIGDECIMAL_IN_SCIENTIFIC_NOTATION: &str = "csv.write-bigdecimal-in-scientific-notation";
const HEADER: &str = "csv.header";

/// Every `csv.*` key this format knows.
const KNOWN_KEYS: [&str; 10] = [
    FIELD_DELIMITER,
    QUOTE_CHARACTER,
    DISABLE_QUOTE_CHARACTER,
    ALLOW_COMMENTS,
    IGNORE_PARSE_ERRORS,
    ARRAY_ELEMENT_DELIMITER,
    ESCAPE_CHARACTER,
    NULL_LITERAL,
    WRITE_BIGDECIMAL_IN_SCIENTIFIC_NOTATION,
    HEADER,
];

/// The resolved options of the `csv` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvOptions {
    /// `csv.field-delimiter`: one ASCII character (`\t` may be written as the two characters
    /// backslash and `t`). Default `,`.
    pub field_delimiter: u8,
    /// `csv.quote-character` (default `"`); `None` when `csv.disable-quote-character` is true.
    pub quote_character: Option<u8>,
    /// `csv.allow-comments`: lines starting with `#` are ignored when reading. Default false.
    pub allow_comments: bool,
    /// `csv.ignore-parse-errors`: skip (and count) malformed rows instead of failing.
    /// Default false.
    pub ignore_parse_errors: bool,
    /// `csv.escape-character`: an escape character inside quoted fields. Default none (a quote
    /// inside a quoted field is written as two quotes).
    pub escape_character: Option<u8>,
    /// `csv.null-literal`: the text that means NULL. Default none: an empty field is NULL for
    /// non-string columns, and NULL is written as an empty field.
    pub null_literal: Option<String>,
    /// `csv.header` (Sluice extension): the first line of each file is a header. Default false.
    pub header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            field_delimiter: b',',
            quote_character: Some(b'"'),
            allow_comments: false,
            ignore_parse_errors: false,
            escape_character: None,
            null_literal: None,
            header: false,
        }
    }
}

impl CsvOptions {
    /// Resolves the `csv.*` keys of `options`; other keys are ignored.
    pub fn parse(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut resolved = CsvOptions::default();
        let mut quote = Some(b'"');
        let mut disable_quote = false;
        for (key, value) in options {
            match key.as_str() {
                FIELD_DELIMITER => resolved.field_delimiter = single_ascii(key, value)?,
                QUOTE_CHARACTER => quote = Some(single_ascii(key, value)?),
                DISABLE_QUOTE_CHARACTER => disable_quote = boolean(key, value)?,
                ALLOW_COMMENTS => resolved.allow_comments = boolean(key, value)?,
                IGNORE_PARSE_ERRORS => resolved.ignore_parse_errors = boolean(key, value)?,
                ESCAPE_CHARACTER => resolved.escape_character = Some(single_ascii(key, value)?),
                NULL_LITERAL => resolved.null_literal = Some(value.clone()),
                HEADER => resolved.header = boolean(key, value)?,
                // Accepted for compatibility with Flink's option set: Sluice's CSV has no array
                // columns and never writes decimals in scientific notation.
                ARRAY_ELEMENT_DELIMITER => {}
                WRITE_BIGDECIMAL_IN_SCIENTIFIC_NOTATION => {
                    boolean(key, value)?;
                }
                other if other.starts_with("csv.") => {
                    return Err(Error::Config {
                        key: key.clone(),
                        value: value.clone(),
                        message: format!(
                            "unknown option of the csv format; did you mean '{}'?",
                            nearest_key(other)
                        ),
                    });
                }
                _ => {}
            }
        }
        resolved.quote_character = if disable_quote { None } else { quote };
        let separators = [Some(resolved.field_delimiter), resolved.quote_character];
        if separators[0] == separators[1] {
            return Err(Error::Config {
                key: QUOTE_CHARACTER.into(),
                value: char::from(resolved.field_delimiter).to_string(),
                message: "the quote character must differ from the field delimiter".into(),
            });
        }
        if resolved.allow_comments && resolved.field_delimiter == b'#' {
            return Err(Error::Config {
                key: FIELD_DELIMITER.into(),
                value: "#".into(),
                message: "'#' starts a comment when csv.allow-comments is true".into(),
            });
        }
        Ok(resolved)
    }
}

fn single_ascii(key: &str, value: &str) -> Result<u8> {
    match value.as_bytes() {
        [byte] if byte.is_ascii() => Ok(*byte),
        b"\\t" => Ok(b'\t'),
        _ => Err(Error::Config {
            key: key.into(),
            value: value.into(),
            message: "must be a single ASCII character (or '\\t')".into(),
        }),
    }
}

fn boolean(key: &str, value: &str) -> Result<bool> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(Error::Config {
            key: key.into(),
            value: value.into(),
            message: "must be 'true' or 'false'".into(),
        })
    }
}

/// The known key with the smallest edit distance to `key`.
fn nearest_key(key: &str) -> &'static str {
    KNOWN_KEYS
        .iter()
        .copied()
        .min_by_key(|known| edit_distance(key, known))
        .unwrap_or(FIELD_DELIMITER)
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.as_bytes().iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_follow_flink() {
        let resolved = CsvOptions::parse(&BTreeMap::new()).expect("empty options are valid");
        assert_eq!(resolved, CsvOptions::default());
        assert_eq!(resolved.field_delimiter, b',');
        assert_eq!(resolved.quote_character, Some(b'"'));
        assert!(!resolved.header);
    }

    #[test]
    fn parses_every_known_key() {
        let resolved = CsvOptions::parse(&options(&[
            ("csv.field-delimiter", "\\t"),
            ("csv.quote-character", "'"),
            ("csv.allow-comments", "TRUE"),
            ("csv.ignore-parse-errors", "true"),
            ("csv.escape-character", "\\"),
            ("csv.null-literal", "N/A"),
            ("csv.header", "true"),
            ("csv.array-element-delimiter", ";"),
            ("format", "csv"),
        ]))
        .expect("valid options");
        assert_eq!(resolved.field_delimiter, b'\t');
        assert_eq!(resolved.quote_character, Some(b'\''));
        assert!(resolved.allow_comments && resolved.ignore_parse_errors && resolved.header);
        assert_eq!(resolved.escape_character, Some(b'\\'));
        assert_eq!(resolved.null_literal.as_deref(), Some("N/A"));
    }

    #[test]
    fn disable_quote_character_wins() {
        let resolved = CsvOptions::parse(&options(&[("csv.disable-quote-character", "true")]))
            .expect("valid options");
        assert_eq!(resolved.quote_character, None);
    }

    #[test]
    fn unknown_key_suggests_nearest() {
        let err =
            CsvOptions::parse(&options(&[("csv.field-delimter", ";")])).expect_err("unknown key");
        assert!(matches!(&err, Error::Config { key, .. } if key == "csv.field-delimter"));
        assert!(
            err.to_string()
                .contains("did you mean 'csv.field-delimiter'"),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_values() {
        for (key, value) in [
            ("csv.field-delimiter", ";;"),
            ("csv.field-delimiter", "é"),
            ("csv.header", "yes"),
            ("csv.quote-character", ","),
        ] {
            let err = CsvOptions::parse(&options(&[(key, value)])).expect_err(key);
            assert!(matches!(err, Error::Config { .. }), "{key}={value}: {err}");
        }
    }
}
