//! `sluice-datasets`: writes generated data sets to files.
//!
//! ```text
//! cargo run --release -p sluice-datasets -- tpch --sf 1 --out datasets/tpch-sf1
//! cargo run --release -p sluice-bench -- tpch --sf 1 --query q1     # generates it if missing
//! sluice sql -i datasets/tpch-sf1/tables.sql -f examples/tpch/q01.sql
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_datasets::tpch::{ParquetCompression, ParquetOptions, TABLES_SQL, write_parquet};

#[derive(Parser)]
#[command(
    name = "sluice-datasets",
    about = "Writes generated data sets to files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The eight TPC-H tables as Parquet, `<out>/<table>/part-<i>.parquet`, and
    /// `<out>/tables.sql` declaring them (an init script for `sluice sql -i`).
    Tpch {
        /// Scale factor (1 = about 1 GB of raw data; 6 M lineitem rows).
        #[arg(long, default_value_t = 1.0)]
        sf: f64,
        /// Output directory (default `datasets/tpch-sf<sf>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Files per table (`nation` and `region` have one).
        #[arg(long, default_value_t = ParquetOptions::default().parts)]
        parts: u32,
        /// Maximum rows per row group (one row group is one split of the filesystem source).
        #[arg(long, default_value_t = ParquetOptions::default().row_group_rows)]
        row_group_rows: usize,
        /// none, snappy, zstd or zstd:<level>.
        #[arg(long, default_value = "snappy", value_parser = parse_compression)]
        compression: ParquetCompression,
        /// Generating threads (default: the available cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn parse_compression(text: &str) -> Result<ParquetCompression, String> {
    text.parse()
        .map_err(|e: sluice_datasets::Error| e.to_string())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Tpch {
            sf,
            out,
            parts,
            row_group_rows,
            compression,
            threads,
        } => {
            let out = out.unwrap_or_else(|| PathBuf::from(format!("datasets/tpch-sf{sf}")));
            let mut options = ParquetOptions::default()
                .with_parts(parts)
                .with_row_group_rows(row_group_rows)
                .with_compression(compression);
            if let Some(threads) = threads {
                options = options.with_threads(threads);
            }
            let start = Instant::now();
            let files = write_parquet(&out, sf, &options)
                .with_context(|| format!("write TPC-H SF {sf} to '{}'", out.display()))?;
            let bytes: u64 = files
                .iter()
                .filter_map(|file| std::fs::metadata(file).ok())
                .map(|metadata| metadata.len())
                .sum();
            println!(
                "TPC-H SF {sf}: {} files, {:.1} MB in {:.2} s; tables declared in {}",
                files.len(),
                bytes as f64 / 1e6,
                start.elapsed().as_secs_f64(),
                out.join(TABLES_SQL).display()
            );
            Ok(())
        }
    }
}
