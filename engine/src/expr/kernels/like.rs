//! `LIKE` with a literal pattern of text pieces between `%`s, two pieces or more
//! (`%special%requests%`, `MEDIUM%POLISHED%`): each piece is found after the one before with
//! `memmem`. Arrow's kernel matches these with a regular expression (it has fast paths only
//! for one piece: equal, prefix, suffix, contains), which took a tenth of TPC-H Q13.

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::buffer::BooleanBuffer;
use memchr::memmem::Finder;

/// A pattern of this kernel's shape: its pieces, and whether the first and last are anchored
/// at the start and end of the text.
pub(crate) struct Pieces<'p> {
    first: Option<&'p [u8]>,
    middle: Vec<Finder<'p>>,
    last: Option<&'p [u8]>,
}

impl<'p> Pieces<'p> {
    /// The pattern's pieces, or `None` when it has fewer than two, or `_` or `\` (which the
    /// general kernel handles).
    pub(crate) fn parse(pattern: &'p str) -> Option<Pieces<'p>> {
        if pattern.contains(['_', '\\']) {
            return None;
        }
        let parts: Vec<&str> = pattern.split('%').collect();
        if parts.iter().filter(|p| !p.is_empty()).count() < 2 {
            return None;
        }
        let anchored = |piece: &'p str| (!piece.is_empty()).then_some(piece.as_bytes());
        let (first, last) = match parts.as_slice() {
            [first, .., last] => (anchored(first), anchored(last)),
            _ => return None,
        };
        let middle = parts[1..parts.len() - 1]
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| Finder::new(p.as_bytes()))
            .collect();
        Some(Pieces {
            first,
            middle,
            last,
        })
    }

    /// Whether `text` matches: the first piece at its start, the last at its end, and the
    /// others in order between them (the leftmost match of each leaves the most room for the
    /// rest, so it finds a match whenever there is one).
    pub(crate) fn matches(&self, text: &[u8]) -> bool {
        let mut rest = text;
        if let Some(first) = self.first {
            match rest.strip_prefix(first) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        if let Some(last) = self.last {
            match rest.strip_suffix(last) {
                Some(before) => rest = before,
                None => return false,
            }
        }
        for finder in &self.middle {
            match finder.find(rest) {
                Some(at) => rest = &rest[at + finder.needle().len()..],
                None => return false,
            }
        }
        true
    }

    /// `values LIKE pattern` (or `NOT LIKE` when `negated`); NULL where the value is NULL.
    pub(crate) fn evaluate(&self, values: &StringArray, negated: bool) -> BooleanArray {
        let matched = BooleanBuffer::collect_bool(values.len(), |i| {
            self.matches(values.value(i).as_bytes()) != negated
        });
        BooleanArray::new(matched, values.nulls().cloned())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// LIKE by definition: `%` matches any run of characters, everything else itself.
    fn reference(text: &[u8], pattern: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'%', rest)) => (0..=text.len()).any(|i| reference(&text[i..], rest)),
            Some((c, rest)) => text.first() == Some(c) && reference(&text[1..], rest),
        }
    }

    #[test]
    fn only_patterns_of_two_pieces_or_more_without_underscore_or_escape() {
        for simple in ["abc", "abc%", "%abc", "%abc%", "%%", "a_c%d", "a\\%b%c"] {
            assert!(Pieces::parse(simple).is_none(), "{simple}");
        }
        for pieces in ["%special%requests%", "MEDIUM%POLISHED%", "a%b", "%a%%b"] {
            assert!(Pieces::parse(pieces).is_some(), "{pieces}");
        }
    }

    proptest! {
        /// Pieces match exactly what LIKE's definition matches, overlaps of the first and
        /// last piece included (`ab%ba` does not match `aba`).
        #[test]
        fn matches_as_like_does(text in "[ab%]{0,8}", pattern in "[ab%]{0,7}") {
            if let Some(pieces) = Pieces::parse(&pattern) {
                prop_assert_eq!(
                    pieces.matches(text.as_bytes()),
                    reference(text.as_bytes(), pattern.as_bytes()),
                    "{:?} LIKE {:?}", text, pattern
                );
            }
        }
    }

    #[test]
    fn nulls_stay_null_and_not_like_negates() {
        let values = StringArray::from(vec![
            Some("the special requests"),
            None,
            Some("requests special"),
        ]);
        let pieces = Pieces::parse("%special%requests%").unwrap();
        let like = pieces.evaluate(&values, false);
        let not_like = pieces.evaluate(&values, true);
        assert_eq!(
            like.iter().collect::<Vec<_>>(),
            vec![Some(true), None, Some(false)]
        );
        assert_eq!(
            not_like.iter().collect::<Vec<_>>(),
            vec![Some(false), None, Some(true)]
        );
    }
}
