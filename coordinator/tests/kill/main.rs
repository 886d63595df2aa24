//! Fault injection with real processes: `sluice sql` running a windowed aggregation over the
//! rate-limited `nexmark` source, checkpointing every 200 ms into a filesystem sink, is killed
//! with SIGKILL at random moments again and again; each time it restarts with
//! `--from-savepoint` on the newest completed checkpoint (at a random parallelism), until it
//! finishes. The committed part files must then hold exactly the rows of a run without
//! failures: none lost, none twice.
//!
//! Set `SLUICE_KILL_SEED` to replay a run's kill moments and parallelisms.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills before the job may finish.
const KILLS: usize = 10;

fn script(out: &Path, rate_limited: bool) -> String {
    format!(
        "CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  dateTime TIMESTAMP(3), extra STRING,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND
) WITH (
  'connector' = 'nexmark', 'table' = 'bid', 'events' = '1000000', 'rate' = '100000',
  'rate.limited' = '{rate_limited}', 'seed' = '3'
);
CREATE TABLE sink (
  auction BIGINT, num BIGINT, total BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3)
) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO sink
SELECT auction, COUNT(*) AS num, SUM(price) AS total, window_start, window_end
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND))
GROUP BY auction, window_start, window_end;
",
        out.display()
    )
}

/// A small deterministic generator (xorshift64*), enough to pick kill moments.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The committed rows under `dir` (hidden in-progress files are not output), sorted.
fn committed_rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the sink directory exists") {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        rows.extend(text.lines().map(str::to_string));
    }
    rows.sort();
    rows
}

/// The newest checkpoint directory with a `_metadata` file under `root`, across job dirs.
fn newest_completed_checkpoint(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for job in std::fs::read_dir(root).ok()?.flatten() {
        for chk in std::fs::read_dir(job.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = chk.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix("chk-")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if chk.path().join("_metadata").is_file() && best.as_ref().is_none_or(|(b, _)| id > *b)
            {
                best = Some((id, chk.path()));
            }
        }
    }
    best.map(|(_, path)| path)
}

fn start(script: &Path, parallelism: u32, checkpoints: &Path, restore: Option<&Path>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["sql", "-f", script.to_str().unwrap()])
        .args(["--parallelism", &parallelism.to_string(), "--slots", "2"])
        .args(["-D", "execution.checkpointing.interval=200ms"])
        .arg("-D")
        .arg(format!(
            "execution.checkpointing.dir={}",
            checkpoints.display()
        ))
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(path) = restore {
        command.arg("--from-savepoint").arg(path);
    }
    command.spawn().expect("the sluice binary starts")
}

#[test]
fn killed_again_and_again_the_job_commits_every_row_exactly_once() {
    let seed = std::env::var("SLUICE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("SLUICE_KILL_SEED={seed}");
    let mut random = Random(seed);
    let dir = tempfile::tempdir().unwrap();

    // The reference: one run without failures, as fast as it goes.
    let expected_dir = dir.path().join("expected");
    let expected_script = dir.path().join("expected.sql");
    std::fs::write(&expected_script, script(&expected_dir, false)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sql", "-f", expected_script.to_str().unwrap()])
        .args(["--parallelism", "2", "--slots", "2"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = committed_rows(&expected_dir);
    assert!(expected.len() > 1000, "{} windows", expected.len());

    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let killed_script = dir.path().join("killed.sql");
    std::fs::write(&killed_script, script(&out, true)).unwrap();
    let mut kills = 0;
    let mut restores = Vec::new();
    loop {
        let restore = newest_completed_checkpoint(&checkpoints);
        let parallelism = 1 + random.below(3) as u32;
        if let Some(path) = &restore {
            restores.push((path.clone(), parallelism));
        }
        let mut child = start(
            &killed_script,
            parallelism,
            &checkpoints,
            restore.as_deref(),
        );
        if kills < KILLS {
            std::thread::sleep(Duration::from_millis(300 + random.below(500)));
            if child.try_wait().unwrap().is_none() {
                child.kill().expect("SIGKILL");
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "restart failed: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            kills >= KILLS,
            "the job finished after only {kills} kills; restores: {restores:?}"
        );
        break;
    }
    // Every restart after the first resumed from a checkpoint that moved forward.
    assert!(restores.len() >= KILLS - 1, "restores: {restores:?}");

    let actual = committed_rows(&out);
    let lost = expected
        .iter()
        .filter(|r| actual.binary_search(r).is_err())
        .count();
    let extra = actual
        .iter()
        .filter(|r| expected.binary_search(r).is_err())
        .count();
    assert_eq!(
        (actual.len(), lost, extra),
        (expected.len(), 0, 0),
        "rows (committed, lost, unexpected) after {kills} kills; restores: {restores:?}"
    );
    assert!(actual == expected, "duplicated rows after {kills} kills");
}
