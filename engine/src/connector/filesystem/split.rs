//! File discovery and split assignment for the bounded file source.
//!
//! The source's `path` is a file or a directory. A directory is walked recursively and all its
//! regular files are read, except hidden ones: like Flink, a file or directory whose name starts
//! with `.` or `_` is skipped (in-progress part files, `_SUCCESS` markers, `.crc` files). The
//! files are sorted by path, so every subtask sees the same list and assignment is
//! deterministic. A path named explicitly is read even if its name looks hidden.
//!
//! Splits are numbered in that order (a CSV file is one split, a Parquet row group is one
//! split) and subtask `i` of `n` reads the splits whose index is `i` modulo `n`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// All files the source reads under `path`, sorted. A missing or unreadable path is an
/// [`Error::Io`] naming it.
pub(crate) fn discover_files(path: &str) -> Result<Vec<PathBuf>> {
    let root = Path::new(path);
    let metadata = fs::metadata(root).map_err(|e| Error::io("read", root, e))?;
    let mut files = Vec::new();
    if metadata.is_dir() {
        walk(root, &mut files)?;
        files.sort();
    } else {
        files.push(root.to_path_buf());
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list directory", dir, e))?;
        if is_hidden(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        // `fs::metadata` follows symbolic links, so a link to a file or directory is read.
        let metadata = fs::metadata(&path).map_err(|e| Error::io("read", &path, e))?;
        if metadata.is_dir() {
            walk(&path, files)?;
        } else if metadata.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

/// Flink's rule: names starting with `.` or `_` are not data.
fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// The splits of `subtask` out of `parallelism`: those whose index is `subtask` mod
/// `parallelism`, in order.
pub(crate) fn assign<T>(splits: Vec<T>, subtask: u32, parallelism: u32) -> Result<Vec<T>> {
    if parallelism == 0 || subtask >= parallelism {
        return Err(Error::Internal(format!(
            "file source subtask {subtask} of parallelism {parallelism}"
        )));
    }
    let (subtask, parallelism) = (subtask as usize, parallelism as usize);
    Ok(splits
        .into_iter()
        .enumerate()
        .filter(|(index, _)| index % parallelism == subtask)
        .map(|(_, split)| split)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_sorted_and_skips_hidden() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("b/nested"))?;
        fs::create_dir_all(root.join("_temporary"))?;
        for name in [
            "c.csv",
            "a.csv",
            "b/nested/z.csv",
            "b/y.csv",
            ".hidden.csv",
            "_SUCCESS",
            "_temporary/part.csv",
            "b/.part-0.inprogress",
        ] {
            fs::write(root.join(name), "1\n")?;
        }
        let root_str = root.to_str().expect("temp dir is UTF-8");
        let files = discover_files(root_str)?;
        let relative: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(root).map(Path::to_path_buf))
            .collect::<Result<_, _>>()?;
        let expected: Vec<PathBuf> = ["a.csv", "b/nested/z.csv", "b/y.csv", "c.csv"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(relative, expected);

        // A file named explicitly is read even if it looks hidden.
        let hidden = root.join(".hidden.csv");
        let files = discover_files(hidden.to_str().expect("UTF-8"))?;
        assert_eq!(files, vec![hidden]);
        Ok(())
    }

    #[test]
    fn missing_path_names_it() {
        let err = discover_files("data/does-not-exist.csv").expect_err("missing");
        let message = err.to_string();
        assert!(
            message.starts_with("read 'data/does-not-exist.csv': "),
            "{message}"
        );
        assert!(matches!(err, Error::Io { .. }));
    }

    #[test]
    fn assignment_is_round_robin() -> anyhow::Result<()> {
        let splits: Vec<u32> = (0..7).collect();
        assert_eq!(assign(splits.clone(), 0, 3)?, vec![0, 3, 6]);
        assert_eq!(assign(splits.clone(), 1, 3)?, vec![1, 4]);
        assert_eq!(assign(splits.clone(), 2, 3)?, vec![2, 5]);
        assert_eq!(assign(splits.clone(), 0, 1)?, splits);
        assert!(assign(splits, 3, 3).is_err());
        Ok(())
    }
}
