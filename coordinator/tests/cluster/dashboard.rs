//! The JobManager's web dashboard in a real browser: a JobManager and two TaskManagers as
//! processes, and headless Chromium (Debian's `/usr/bin/chromium`) driven by playwright-core
//! from `coordinator/tests/web/dashboard.mjs`, which submits a checkpointed Nexmark job through
//! the page's SQL box, checks the drawn job graph against `GET /jobs/{id}/plan`, the subtasks'
//! states, a completed checkpoint, a savepoint, a TaskManager's page and the error shown for
//! an unknown job, and cancels the job with its Cancel button. Screenshots of each page are
//! kept in `$SLUICE_TEST_ARTIFACTS/dashboard` (default: `test-artifacts/dashboard` in the
//! cargo target directory); the test prints where.
//!
//! Chromium, Node.js and the script's `node_modules` come from `ci/install-deps.sh`; without
//! them the test fails and says so.

use std::process::Child;

use super::*;

/// How long the browser script may take as a whole (each of its waits has the usual 60 s).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

/// Two paced Nexmark sources (5,000 events a second each, for hours) in a union, counted per
/// person in 2-second tumbling windows, at parallelism 2, checkpointed every second: four
/// chains joined by FORWARD and HASH exchanges, running until cancelled.
const JOB: &str = "SET 'execution.checkpointing.interval' = '1s';
SET 'parallelism.default' = '2';
CREATE TABLE person (
    id  BIGINT, name  VARCHAR, emailAddress  VARCHAR, creditCard  VARCHAR, city  VARCHAR,
    state  VARCHAR, dateTime  TIMESTAMP(3), extra  VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'person', 'events' = '100000000',
        'rate' = '5000', 'rate.limited' = 'true');
CREATE TABLE auction (
    id  BIGINT, itemName  VARCHAR, description  VARCHAR, initialBid  BIGINT, reserve  BIGINT,
    dateTime  TIMESTAMP(3), expires  TIMESTAMP(3), seller  BIGINT, category  BIGINT,
    extra  VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'auction', 'events' = '100000000',
        'rate' = '5000', 'rate.limited' = 'true');
CREATE TABLE activity (person BIGINT, events BIGINT, window_start TIMESTAMP(3))
WITH ('connector' = 'blackhole');
CREATE VIEW people AS
SELECT id AS person, dateTime FROM person
UNION ALL
SELECT seller AS person, dateTime FROM auction;
INSERT INTO activity
SELECT person, COUNT(*), window_start
FROM TABLE(TUMBLE(TABLE people, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))
GROUP BY person, window_start, window_end;
";

/// The browser, Node.js and the script's packages, or a failure naming what to install.
fn browser_tools(web: &Path) -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("SLUICE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file());
    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push(format!("Chromium ({})", chromium.display()));
    }
    if node.is_none() {
        missing.push("Node.js (`node` on PATH)".to_string());
    }
    let playwright = web.join("node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        missing.push(format!(
            "playwright-core ({}; `npm ci` there)",
            playwright.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the dashboard test needs {}: run ci/install-deps.sh",
        missing.join(", ")
    );
    (chromium, node.expect("checked above"))
}

/// Where the screenshots go: `$SLUICE_TEST_ARTIFACTS/dashboard`, else
/// `test-artifacts/dashboard` in the cargo target directory (the one holding the `sluice`
/// binary under test). Emptied first, so what is there is this run's.
fn artifacts_dir() -> PathBuf {
    let dir = match std::env::var_os("SLUICE_TEST_ARTIFACTS") {
        Some(root) => PathBuf::from(root).join("dashboard"),
        None => Path::new(env!("CARGO_BIN_EXE_sluice"))
            .ancestors()
            .nth(2)
            .expect("the binary lies in <target>/<profile>/")
            .join("test-artifacts/dashboard"),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("emptying {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Waits for `child` up to [`SCRIPT_DEADLINE`]; kills it after that.
fn wait_script(child: &mut Child) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            return Some(status);
        }
        if start.elapsed() > SCRIPT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_dashboard_submits_a_sql_job_draws_its_graph_and_cancels_it_in_headless_chromium() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    let (chromium, node) = browser_tools(&web);
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let checkpoint_dir = format!("execution.checkpointing.dir={}", checkpoints.display());
    let (jm, rpc, rest) = jobmanager(dir.path(), &["-D", &checkpoint_dir]);
    let (tm1, _, _) = taskmanager(dir.path(), "tm1", &rpc, 2);
    let (tm2, _, _) = taskmanager(dir.path(), "tm2", &rpc, 2);
    let logs = [&jm, &tm1, &tm2];
    wait_for("two TaskManagers", &logs, || {
        (get(&rest, "/overview")["taskmanagers"] == 2).then_some(())
    });
    let script = dir.path().join("job.sql");
    std::fs::write(&script, JOB).unwrap();
    let artifacts = artifacts_dir();
    println!("dashboard screenshots: {}", artifacts.display());

    let stdout = dir.path().join("node.out");
    let stderr = dir.path().join("node.err");
    let started = Instant::now();
    let mut child = Command::new(&node)
        .arg(web.join("dashboard.mjs"))
        .arg("--url")
        .arg(format!("http://{rest}"))
        .arg("--sql")
        .arg(&script)
        .arg("--artifacts")
        .arg(&artifacts)
        .arg("--chromium")
        .arg(&chromium)
        .current_dir(&web)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} {}: {e}", node.display(), web.display()));
    let status = wait_script(&mut child);
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    let jm_log = jm.log();
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!(
            "tests/web/dashboard.mjs failed ({status}):\n{err}\n--- its stdout:\n{out}\n--- \
             screenshots: {}\n--- jobmanager log (end):\n{}",
            artifacts.display(),
            tail(&jm_log, 40)
        ),
        None => panic!(
            "tests/web/dashboard.mjs did not end within {} s and was killed:\n{err}\n{out}",
            SCRIPT_DEADLINE.as_secs()
        ),
    }
    println!(
        "the browser script took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let report: Value = out
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("the script printed no JSON report:\n{out}\n{err}"));
    let id = report["jobid"].as_str().unwrap().to_string();
    // The page saw CANCELED; the REST API says the same, and the job is gone from the slots.
    wait_for("the job to be CANCELED", &logs, || {
        (job_state(&rest, &id) == "CANCELED").then_some(())
    });
    wait_for("the job's slots to be free", &logs, || {
        (get(&rest, "/overview")["slots-available"] == 4).then_some(())
    });
    let job = get(&rest, &format!("/jobs/{id}"));
    let plan = get(&rest, &format!("/jobs/{id}/plan"));
    let nodes = plan["plan"]["nodes"].as_array().unwrap();
    assert_eq!(report["plan_nodes"], nodes.len());
    assert_eq!(nodes.len(), job["vertices"].as_array().unwrap().len());
    assert_eq!(nodes.len(), 4, "{plan:#}");
    let strategies: Vec<&str> = nodes
        .iter()
        .flat_map(|n| n["inputs"].as_array().into_iter().flatten())
        .map(|i| i["ship_strategy"].as_str().unwrap())
        .collect();
    assert_eq!(strategies, ["FORWARD", "FORWARD", "HASH"], "{plan:#}");
    let checkpoints = get(&rest, &format!("/jobs/{id}/checkpoints"));
    assert!(
        checkpoints["counts"]["completed"].as_u64().unwrap() >= 1,
        "{checkpoints}"
    );
    let savepoint = report["savepoint"].as_str().unwrap();
    assert!(
        Path::new(savepoint).join("_metadata").is_file(),
        "the savepoint the page showed has its _metadata: {savepoint}"
    );
    for name in [
        "overview",
        "job",
        "checkpoints",
        "taskmanager",
        "job-canceled",
    ] {
        let shot = artifacts.join(format!("{name}.png"));
        let size = std::fs::metadata(&shot)
            .unwrap_or_else(|e| panic!("screenshot {}: {e}", shot.display()))
            .len();
        assert!(size > 1000, "{} is {size} bytes", shot.display());
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
