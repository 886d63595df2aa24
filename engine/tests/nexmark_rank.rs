//! Nexmark q9 (winning bids), q18 (last bid per bidder and auction) and q19 (top 10 bids per
//! auction) from `examples/nexmark/` through the SQL session on a bounded event count, in
//! streaming mode at parallelism 2. Each query's changelog is applied to a table of rows and
//! compared with the answer computed in plain Rust from the generator's rows.
//!
//! Rows tied on every ORDER BY column may be ranked in either arrival order (the source
//! subtasks interleave), so the comparison uses what the ORDER BY determines (the partition,
//! the rank and the ordering values) and checks separately that every emitted row is a real
//! input row.
//!
//! A last test fails a Top-N job once after a completed checkpoint and checks that the
//! restarted job, restored from the rank's snapshot, ends with the rows of a run without
//! failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use sluice_datasets::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use sluice_engine::element::RowKind;
use sluice_engine::runtime::RuntimeConfig;
use sluice_engine::sql::{Outcome, Session, SessionConfig};

const EVENTS: u64 = 20_000;

fn session() -> Session {
    Session::new(SessionConfig {
        parallelism: 2,
        runtime: RuntimeConfig::default().with_slots(2),
        ..Default::default()
    })
}

/// The query file with the event count of this test.
fn script(query: &str) -> Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/nexmark")
        .join(format!("{query}.sql"));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    ensure!(
        text.contains("'events' = '10000000'"),
        "{query}: no events option"
    );
    Ok(text.replace("'events' = '10000000'", &format!("'events' = '{EVENTS}'")))
}

/// Runs the file as written (into its blackhole sink), then its query as a `SELECT`, and
/// returns the rows its changelog leaves, each extracted by `row`.
fn run<T: Ord + Clone + std::fmt::Debug>(
    query: &str,
    row: impl Fn(&RecordBatch, usize) -> T,
) -> Result<Vec<T>> {
    let text = script(query)?;
    session()
        .run_script(&text, &mut |_| Ok(()))
        .with_context(|| format!("{query} as written"))?;

    let insert = text.find("INSERT INTO").context("no INSERT")?;
    let select = &text[insert..];
    let select = select[select.find("SELECT").context("no SELECT")?..]
        .trim_end()
        .trim_end_matches(';');
    let mut session = session();
    session.execute(&text[..insert])?;
    let outcomes = session
        .execute(select)
        .with_context(|| format!("{query} as a SELECT"))?;
    let (batches, changelog) = match outcomes.last() {
        Some(Outcome::Changelog { batches, .. }) => (batches, true),
        Some(Outcome::Table { batches, .. }) => (batches, false),
        other => bail!("{query}: unexpected outcome {other:?}"),
    };
    let mut table: BTreeMap<T, usize> = BTreeMap::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let kind = if changelog {
                let column = batch.column_by_name("_row_kind").context("_row_kind")?;
                RowKind::from_i8(column.as_primitive::<arrow::datatypes::Int8Type>().value(i))
                    .context("a row kind")?
            } else {
                RowKind::Insert
            };
            let value = row(batch, i);
            match kind {
                RowKind::Insert | RowKind::UpdateAfter => *table.entry(value).or_default() += 1,
                RowKind::UpdateBefore | RowKind::Delete => {
                    let count = table.get_mut(&value).with_context(|| {
                        format!("{query}: retraction of a row never emitted: {value:?}")
                    })?;
                    *count -= 1;
                    if *count == 0 {
                        table.remove(&value);
                    }
                }
            }
        }
    }
    Ok(table
        .into_iter()
        .flat_map(|(value, count)| std::iter::repeat_n(value, count))
        .collect())
}

fn int(batch: &RecordBatch, name: &str, row: usize) -> i64 {
    let column = batch.column_by_name(name).expect("the column exists");
    match column.as_primitive_opt::<Int64Type>() {
        Some(values) => values.value(row),
        None => column.as_primitive::<TimestampMillisecondType>().value(row),
    }
}

/// A bid as the test compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Bid {
    auction: i64,
    bidder: i64,
    price: i64,
    time: i64,
}

#[derive(Debug, Clone, Copy)]
struct Auction {
    id: i64,
    start: i64,
    expires: i64,
}

/// The generator's bids and auctions, in generation order.
fn generated() -> Result<(Vec<Bid>, Vec<Auction>)> {
    let config = NexmarkConfig::default().with_events(Some(EVENTS));
    let mut generator = NexmarkGenerator::new(config, 0, Some(EVENTS))?
        .with_tables(&[NexmarkTable::Auction, NexmarkTable::Bid]);
    let (mut bids, mut auctions) = (Vec::new(), Vec::new());
    while let Some(batches) = generator.next_batches(4096)? {
        if let Some(b) = batches.get(NexmarkTable::Bid) {
            for i in 0..b.num_rows() {
                bids.push(Bid {
                    auction: int(b, "auction", i),
                    bidder: int(b, "bidder", i),
                    price: int(b, "price", i),
                    time: int(b, "dateTime", i),
                });
            }
        }
        if let Some(a) = batches.get(NexmarkTable::Auction) {
            for i in 0..a.num_rows() {
                auctions.push(Auction {
                    id: int(a, "id", i),
                    start: int(a, "dateTime", i),
                    expires: int(a, "expires", i),
                });
            }
        }
    }
    ensure!(bids.len() > 10_000 && !auctions.is_empty(), "too few rows");
    Ok((bids, auctions))
}

#[test]
fn q19_top_10_bids_per_auction() -> Result<()> {
    let (bids, _) = generated()?;
    let result = run("q19", |b, i| {
        (
            int(b, "auction", i),
            int(b, "rank_number", i),
            int(b, "price", i),
            Bid {
                auction: int(b, "auction", i),
                bidder: int(b, "bidder", i),
                price: int(b, "price", i),
                time: int(b, "dateTime", i),
            },
        )
    })?;
    let mut by_auction: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for bid in &bids {
        by_auction.entry(bid.auction).or_default().push(bid.price);
    }
    let mut expected = Vec::new();
    for (auction, mut prices) in by_auction {
        prices.sort_unstable_by(|a, b| b.cmp(a));
        for (rank, price) in prices.into_iter().take(10).enumerate() {
            expected.push((auction, rank as i64 + 1, price));
        }
    }
    let actual: Vec<(i64, i64, i64)> = result.iter().map(|r| (r.0, r.1, r.2)).collect();
    assert_eq!(actual.len(), expected.len());
    assert_eq!(actual, expected);
    let real: BTreeSet<Bid> = bids.iter().copied().collect();
    assert!(result.iter().all(|r| real.contains(&r.3)));
    Ok(())
}

#[test]
fn q18_last_bid_per_bidder_and_auction() -> Result<()> {
    let (bids, _) = generated()?;
    let result = run("q18", |b, i| Bid {
        auction: int(b, "auction", i),
        bidder: int(b, "bidder", i),
        price: int(b, "price", i),
        time: int(b, "dateTime", i),
    })?;
    let mut last: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for bid in &bids {
        let time = last.entry((bid.bidder, bid.auction)).or_insert(bid.time);
        *time = (*time).max(bid.time);
    }
    let actual: BTreeMap<(i64, i64), i64> = result
        .iter()
        .map(|b| ((b.bidder, b.auction), b.time))
        .collect();
    assert_eq!(actual.len(), result.len(), "one row per bidder and auction");
    assert_eq!(actual, last);
    let real: BTreeSet<Bid> = bids.iter().copied().collect();
    assert!(result.iter().all(|r| real.contains(r)));
    Ok(())
}

#[test]
fn q9_winning_bids() -> Result<()> {
    let (bids, auctions) = generated()?;
    let result = run("q9", |b, i| {
        (
            int(b, "id", i),
            int(b, "price", i),
            int(b, "bid_dateTime", i),
            int(b, "auction", i),
            int(b, "bidder", i),
        )
    })?;
    let mut expected = Vec::new();
    for auction in &auctions {
        let winner = bids
            .iter()
            .filter(|b| {
                b.auction == auction.id && auction.start <= b.time && b.time <= auction.expires
            })
            .min_by_key(|b| (std::cmp::Reverse(b.price), b.time));
        if let Some(bid) = winner {
            expected.push((auction.id, bid.price, bid.time));
        }
    }
    expected.sort_unstable();
    ensure!(
        !expected.is_empty(),
        "no auction has a bid in its time range"
    );
    let actual: Vec<(i64, i64, i64)> = result.iter().map(|r| (r.0, r.1, r.2)).collect();
    assert_eq!(actual, expected);
    let real: BTreeSet<(i64, i64, i64)> = bids
        .iter()
        .map(|b| (b.auction, b.bidder, b.price))
        .collect();
    assert!(
        result
            .iter()
            .all(|r| r.0 == r.3 && real.contains(&(r.3, r.4, r.1)))
    );
    Ok(())
}

/// `(auction, rank, price)`.
type RankedPrice = (i64, i64, i64);

/// Top 3 bids per auction (final rows at end of input) over 200 000 events; with `failure`, an
/// operator before the rank fails once after 60 000 bids and a completed checkpoint, and the
/// job restarts from that checkpoint. Returns `(auction, rank, price)` rows and the job result.
fn checkpointed_top3(
    checkpoints: Option<&std::path::Path>,
) -> Result<(Vec<RankedPrice>, sluice_engine::runtime::JobResult)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use sluice_engine::api::StreamEnvironment;
    use sluice_engine::checkpoint::{CheckpointConfig, RestartStrategy};
    use sluice_engine::connector::{NexmarkSource, SourceSpec};
    use sluice_engine::graph::{RankOrder, RankStrategy};
    use sluice_engine::runtime::LocalRuntime;

    let has_checkpoint = |dir: &std::path::Path| {
        std::fs::read_dir(dir).is_ok_and(|jobs| {
            jobs.flatten().any(|job| {
                std::fs::read_dir(job.path()).is_ok_and(|chks| {
                    chks.flatten()
                        .any(|chk| chk.path().join("_metadata").is_file())
                })
            })
        })
    };
    let runtime = LocalRuntime::new(
        RuntimeConfig::default()
            .with_slots(2)
            .with_pinning(false)
            .with_batch_size(200)
            .with_checkpointing(checkpoints.map(|dir| {
                CheckpointConfig::new(Duration::from_millis(50), dir).with_num_retained(2)
            }))
            .with_restart_strategy(RestartStrategy::FixedDelay {
                attempts: 1,
                delay: Duration::from_millis(10),
            }),
    );
    let env = StreamEnvironment::new("checkpointed-top3").with_parallelism(2);
    let config = NexmarkConfig::default()
        .with_seed(5)
        .with_events(Some(200_000));
    let failed = Arc::new(AtomicBool::new(checkpoints.is_none()));
    let seen = Arc::new(AtomicU64::new(0));
    let dir = checkpoints.map(std::path::Path::to_path_buf);
    let flag = failed.clone();
    env.source(
        "bids",
        SourceSpec::Nexmark(NexmarkSource::new(NexmarkTable::Bid, config)),
    )?
    .map_batches(
        "FailOnce",
        NexmarkTable::Bid.schema(),
        move |batch: &RecordBatch| {
            if let Some(dir) = &dir
                && !flag.load(Ordering::Acquire)
            {
                // Slow the first attempt down so checkpoints complete before the failure.
                std::thread::sleep(Duration::from_millis(1));
                let total = seen.fetch_add(batch.num_rows() as u64, Ordering::AcqRel);
                if total >= 60_000 && has_checkpoint(dir) && !flag.swap(true, Ordering::AcqRel) {
                    return Err(sluice_engine::Error::Unavailable {
                        what: "test operator FailOnce".into(),
                        message: "injected failure".into(),
                    });
                }
            }
            Ok(batch.clone())
        },
    )?
    .key_by(["auction"])
    .rank(
        vec![RankOrder::desc("price")],
        3,
        Some("rn"),
        RankStrategy::Final,
        None,
    )?
    .collect("out")?;
    let output = env.execute_on(&runtime)?;
    ensure!(failed.load(Ordering::Acquire), "the failure was injected");
    let mut rows = Vec::new();
    for batch in &output.collected.batches("out") {
        for i in 0..batch.num_rows() {
            rows.push((
                int(batch, "auction", i),
                int(batch, "rn", i),
                int(batch, "price", i),
            ));
        }
    }
    rows.sort_unstable();
    Ok((rows, output.result))
}

#[test]
fn top_n_recovers_from_a_failure_through_its_checkpointed_state() -> Result<()> {
    let (expected, _) = checkpointed_top3(None)?;
    ensure!(expected.len() > 1_000, "{} rows", expected.len());
    let dir = tempfile::tempdir()?;
    let (rows, result) = checkpointed_top3(Some(dir.path()))?;
    assert_eq!(result.restarts, 1);
    assert!(result.restored_from.is_some(), "restored from a checkpoint");
    assert_eq!(rows, expected);
    Ok(())
}
