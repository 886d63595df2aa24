//! Word count on the DataStream API.
//!
//! ```text
//! cargo run --release -p sluice-engine --example wordcount -- --input FILE --output DIR [--parallelism N]
//! ```
//!
//! Splits every line into words at characters that are not ASCII letters or digits, lowercases
//! them, counts each word, and writes `word,count` rows as CSV part files into DIR. The counts
//! equal `tr -cs '[:alnum:]' '\n' < FILE | tr A-Z a-z | sort | uniq -c`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringBuilder};
use sluice_engine::api::{StreamEnvironment, utf8_schema};
use sluice_engine::connector::{FileFormat, FileSinkSpec, SinkSpec};
use sluice_engine::{Error, Result};

#[cfg(not(test))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Splits a batch of lines into a batch of lowercase words: one pass over the bytes, appending
/// each word to the output column (no allocation per word).
fn split_words(lines: &RecordBatch) -> Result<RecordBatch> {
    let lines = lines.column(0).as_string::<i32>();
    let mut words = StringBuilder::with_capacity(lines.len() * 8, lines.value_data().len());
    let mut word = String::new();
    for line in lines.iter().flatten() {
        for byte in line.bytes() {
            if byte.is_ascii_alphanumeric() {
                word.push(byte.to_ascii_lowercase() as char);
            } else if !word.is_empty() {
                words.append_value(&word);
                word.clear();
            }
        }
        if !word.is_empty() {
            words.append_value(&word);
            word.clear();
        }
    }
    RecordBatch::try_new(utf8_schema("word"), vec![Arc::new(words.finish())])
        .map_err(|e| Error::arrow("split words", e))
}

/// Builds and runs the job: counts of the words of `input`, as CSV part files in `output`.
pub fn run(input: &str, output: &str, parallelism: u32) -> Result<()> {
    let env = StreamEnvironment::new("wordcount").with_parallelism(parallelism);
    env.read_text_file(input)?
        .map_batches("SplitWords", utf8_schema("word"), split_words)?
        .key_by(["word"])
        .count("count")?
        .sink(
            "WordCounts",
            SinkSpec::Filesystem(FileSinkSpec {
                path: output.to_string(),
                format: FileFormat::Csv,
                options: BTreeMap::new(),
                partition_keys: Vec::new(),
                overwrite: None,
            }),
        )?;
    let result = env.execute_local()?.result;
    eprint!("{result}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let value = raw
            .next()
            .ok_or_else(|| anyhow::anyhow!("flag {flag} needs a value"))?;
        args.insert(flag.trim_start_matches('-').to_string(), value);
    }
    let usage = "usage: wordcount --input FILE --output DIR [--parallelism N]";
    let input = args.get("input").ok_or_else(|| anyhow::anyhow!(usage))?;
    let output = args.get("output").ok_or_else(|| anyhow::anyhow!(usage))?;
    let parallelism: u32 = args.get("parallelism").map_or(Ok(1), |p| p.parse())?;

    run(input, output, parallelism)?;
    Ok(())
}
