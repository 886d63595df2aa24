//! The wordcount example against `tr -cs '[:alnum:]' '\n' | tr A-Z a-z | sort | uniq -c`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

#[path = "../../examples/wordcount.rs"]
#[allow(dead_code)]
mod example;

/// Text with mixed case, digits, punctuation, CRLF, blank lines and non-ASCII letters (which
/// `tr` in the C locale treats as separators, as the example does).
fn sample_text() -> String {
    let words = [
        "Sluice",
        "stream",
        "STREAM",
        "batch",
        "Arrow",
        "flink",
        "x1",
        "42",
        "don't",
        "naïve",
        "日本語",
        "e-mail",
        "state_full",
        "Ünïcode",
        "a",
        "A",
        "watermark",
    ];
    let mut text = String::new();
    let mut seed = 12345u64;
    for line in 0..3000 {
        let width = (line % 13) as usize;
        for _ in 0..width {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(words[(seed >> 33) as usize % words.len()]);
            text.push_str([" ", ", ", "  ", "\t", "; ", "!"][(seed >> 20) as usize % 6]);
        }
        text.push_str(if line % 7 == 0 { "\r\n" } else { "\n" });
    }
    text
}

fn reference(path: &std::path::Path) -> BTreeMap<String, u64> {
    let script = format!(
        "tr -cs '[:alnum:]' '\\n' < '{}' | tr A-Z a-z | sort | uniq -c",
        path.display()
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("LC_ALL", "C")
        .stdout(Stdio::piped())
        .output()
        .expect("sh runs");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("ASCII output")
        .lines()
        .filter_map(|line| {
            let (count, word) = line.trim_start().split_once(' ')?;
            // A leading separator makes `tr` emit one empty line; it is not a word.
            (!word.is_empty()).then(|| (word.to_string(), count.parse().expect("a count")))
        })
        .collect()
}

fn read_counts(dir: &std::path::Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("output directory exists") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(&path)
            .expect("readable part")
            .lines()
        {
            let (word, count) = line.rsplit_once(',').expect("word,count");
            assert!(
                counts
                    .insert(word.to_string(), count.parse().expect("a count"))
                    .is_none(),
                "{word} twice"
            );
        }
    }
    counts
}

#[test]
fn wordcount_equals_tr_sort_uniq() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    std::fs::File::create(&input)
        .unwrap()
        .write_all(sample_text().as_bytes())
        .unwrap();
    let expected = reference(&input);
    assert!(expected.len() > 10);
    for parallelism in [1, 3] {
        let output = dir.path().join(format!("out-{parallelism}"));
        example::run(
            input.to_str().unwrap(),
            output.to_str().unwrap(),
            parallelism,
        )
        .unwrap();
        assert_eq!(read_counts(&output), expected, "parallelism {parallelism}");
    }
}

#[test]
fn wordcount_of_a_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file.txt");
    let error = example::run(
        missing.to_str().unwrap(),
        dir.path().join("out").to_str().unwrap(),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("no-such-file.txt"), "{error}");
}
