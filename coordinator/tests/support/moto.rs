//! A real S3-compatible server for tests: moto's server (`python -m moto.server`) from the
//! virtual environment `ci/install-deps.sh` makes, found through `$SLUICE_PYTHON` (which
//! `ci/test.sh` exports). It listens on a free loopback port, answers S3 requests with any
//! credentials, keeps its buckets in memory and is killed when the handle is dropped.
//!
//! Shared by the coordinator's unit tests and its test binaries (`#[path]` includes).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long moto may take to start answering.
const STARTUP: Duration = Duration::from_secs(60);

/// Credentials the tests use (moto accepts any).
pub const ACCESS_KEY: &str = "sluice-test-key";
pub const SECRET_KEY: &str = "sluice-test-secret";

/// A running moto server; killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

fn python() -> PathBuf {
    match std::env::var_os("SLUICE_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "SLUICE_PYTHON is not set: this test runs moto's S3 server. Run ci/install-deps.sh, \
             then export SLUICE_PYTHON=/var/tmp/sluice-venv/bin/python (or \
             $SLUICE_VENV/bin/python); ci/test.sh does both"
        ),
    }
}

impl Moto {
    /// Starts the server and waits until it answers. `log_dir` gets its request log.
    pub fn start(log_dir: &std::path::Path) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let log = log_dir.join(format!("moto-{port}.log"));
        let child = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("create the moto log"))
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start moto with {}: {e}", python().display()));
        let mut moto = Moto { child, port, log };
        let started = Instant::now();
        loop {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!(
                    "moto exited ({status}) before answering (is moto[server] installed? run \
                     ci/install-deps.sh): {}",
                    std::fs::read_to_string(&moto.log).unwrap_or_default()
                );
            }
            if moto.request("GET", "/").is_ok_and(|status| status == 200) {
                return moto;
            }
            assert!(
                started.elapsed() < STARTUP,
                "moto did not answer within {STARTUP:?}: {}",
                std::fs::read_to_string(&moto.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates bucket `name` (an S3 `PUT /name`).
    pub fn create_bucket(&self, name: &str) {
        let status = self
            .request("PUT", &format!("/{name}"))
            .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
        assert_eq!(status, 200, "create bucket {name}");
    }

    /// The `-D` options (for `sluice`) that point the S3 store at this server.
    pub fn options(&self) -> Vec<String> {
        vec![
            format!("s3.endpoint={}", self.endpoint()),
            "s3.path.style.access=true".into(),
            format!("s3.access-key={ACCESS_KEY}"),
            format!("s3.secret-key={SECRET_KEY}"),
        ]
    }

    /// One unsigned HTTP/1.1 request; returns the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {response}")))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
