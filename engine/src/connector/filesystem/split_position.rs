//! Read positions of the file source, per split, so that a checkpoint restores at any
//! parallelism.
//!
//! A reader's position is `{"splits": {"<split>": <progress>, …}}` with one entry for each of
//! its splits, named by the file's path (`<path>#<row group>` for a Parquet row group). The
//! progress is `{"done": true, "skipped": n}` for a split read to its end and the format's
//! resume point otherwise (a CSV or JSON file's byte offset and line, a row group's rows read),
//! always with the rows the split skipped as malformed. The checkpoint merges the splits of
//! every old subtask (see [`crate::checkpoint::RestoredCheckpoint::source_position_for`]), so a
//! new reader finds each of its splits whichever old subtask read it, and every split resumes
//! exactly once whatever the old and new parallelism.

use serde_json::{Map, Value};

use crate::{Error, Result};

/// How far a reader got in one of its splits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SplitProgress<P> {
    /// Reading resumes at `P` (the start of the split when nothing was read).
    At(P),
    /// Read to its end.
    Done,
}

/// The position JSON of a reader whose splits are `(name, progress as JSON, skipped rows)`.
pub(crate) fn encode(splits: impl Iterator<Item = (String, Option<Value>, u64)>) -> Value {
    let splits: Map<String, Value> = splits
        .map(|(name, at, skipped)| {
            let mut entry = match at {
                Some(Value::Object(fields)) => fields,
                Some(other) => Map::from_iter([("at".to_string(), other)]),
                None => Map::from_iter([("done".to_string(), Value::Bool(true))]),
            };
            entry.insert("skipped".into(), skipped.into());
            (name, Value::Object(entry))
        })
        .collect();
    serde_json::json!({ "splits": splits })
}

/// The progress and skipped rows of split `name` in `position`, decoding a resume point with
/// `decode`. A position without the split (the input changed since the checkpoint) or with a
/// malformed entry is an error naming the source and the split.
pub(crate) fn decode<P>(
    position: &Value,
    source: &str,
    name: &str,
    decode: impl FnOnce(&Map<String, Value>) -> Option<P>,
) -> Result<(SplitProgress<P>, u64)> {
    let Some(splits) = position.get("splits").and_then(Value::as_object) else {
        return Err(Error::data(
            format!("{source} source position"),
            format!(
                "{position} has no per-split positions (a checkpoint of an older version; \
                 restore it with the version that wrote it)"
            ),
        ));
    };
    let entry = splits.get(name).and_then(Value::as_object).ok_or_else(|| {
        Error::data(
            format!("{source} source position"),
            format!(
                "the checkpoint holds no position of '{name}' (the input changed since \
                     the checkpoint?)"
            ),
        )
    })?;
    let skipped = entry.get("skipped").and_then(Value::as_u64).unwrap_or(0);
    if entry.get("done").and_then(Value::as_bool) == Some(true) {
        return Ok((SplitProgress::Done, skipped));
    }
    let at = decode(entry).ok_or_else(|| {
        Error::data(
            format!("{source} source position"),
            format!("bad position of '{name}': {}", Value::Object(entry.clone())),
        )
    })?;
    Ok((SplitProgress::At(at), skipped))
}

/// A file's name in the source position: its path as the source listed it.
pub(crate) fn file_key(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// The first split at or after `from` that is not done (`progress.len()` when none is).
pub(crate) fn next_unread<P>(progress: &[SplitProgress<P>], from: usize) -> usize {
    progress
        .iter()
        .skip(from)
        .position(|p| matches!(p, SplitProgress::At(_)))
        .map_or(progress.len(), |i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &Map<String, Value>) -> Option<u64> {
        fields.get("line").and_then(Value::as_u64)
    }

    #[test]
    fn positions_round_trip_per_split() {
        let position = encode(
            [
                ("/in/a.csv".to_string(), None, 2),
                (
                    "/in/b.csv".to_string(),
                    Some(serde_json::json!({"line": 7})),
                    0,
                ),
            ]
            .into_iter(),
        );
        assert_eq!(
            decode(&position, "csv", "/in/a.csv", line).unwrap(),
            (SplitProgress::Done, 2)
        );
        assert_eq!(
            decode(&position, "csv", "/in/b.csv", line).unwrap(),
            (SplitProgress::At(7), 0)
        );
        let missing = decode(&position, "csv", "/in/c.csv", line).unwrap_err();
        assert!(missing.to_string().contains("/in/c.csv"), "{missing}");
        let old = decode(&serde_json::json!({"file": 0}), "csv", "/in/a.csv", line).unwrap_err();
        assert!(old.to_string().contains("per-split"), "{old}");
    }

    #[test]
    fn next_unread_skips_done_splits() {
        let progress = [
            SplitProgress::Done,
            SplitProgress::At(1),
            SplitProgress::Done,
            SplitProgress::At(0),
        ];
        assert_eq!(next_unread(&progress, 0), 1);
        assert_eq!(next_unread(&progress, 2), 3);
        assert_eq!(next_unread(&progress, 4), 4);
        assert_eq!(next_unread::<u8>(&[], 0), 0);
    }
}
