//! Job control of a running local job: savepoints on request, over a Unix domain socket.
//!
//! With [`super::RuntimeConfig::control_dir`] set, a running job listens on
//! `<dir>/<job-id>.sock` (removed when the job ends). A client connects, sends one line and
//! reads one line back:
//!
//! ```text
//! savepoint <stop: 0 | 1> <target directory or s3:// URL, or - for the default>
//! ok <savepoint directory>          | error <message>
//! ```
//!
//! The default target is the checkpoint directory's root (`execution.checkpointing.dir`);
//! savepoints need checkpointing to be on, since they travel the same barrier path.
//! [`request_savepoint`] is the client side (`sluice savepoint`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use tracing::{info, warn};

use super::checkpointing::SavepointRequest;
use crate::checkpoint::StatePath;
use crate::ids::JobId;
use crate::{Error, Result};

/// How often a caller waiting for a savepoint looks whether it should give up.
const POLL: Duration = Duration::from_millis(20);

/// Asks a running job for savepoints. Cheap to clone; usable from any thread.
#[derive(Debug, Clone)]
pub struct SavepointTrigger {
    job_id: JobId,
    default_root: Option<StatePath>,
    sender: Sender<SavepointRequest>,
}

impl SavepointTrigger {
    pub(crate) fn new(
        job_id: JobId,
        default_root: Option<StatePath>,
        sender: Sender<SavepointRequest>,
    ) -> Self {
        SavepointTrigger {
            job_id,
            default_root,
            sender,
        }
    }

    pub fn job_id(&self) -> &JobId {
        &self.job_id
    }

    /// Takes a savepoint under `root` (default: the checkpoint directory), stopping the job
    /// after it with `stop`, and returns its directory. Waits for it until `give_up` says so.
    pub fn trigger(
        &self,
        root: Option<&StatePath>,
        stop: bool,
        give_up: &dyn Fn() -> bool,
    ) -> Result<StatePath> {
        let Some(default_root) = &self.default_root else {
            return Err(Error::Config {
                key: "execution.checkpointing.interval".into(),
                value: String::new(),
                message: format!(
                    "job {} runs without checkpointing; savepoints need it on",
                    self.job_id
                ),
            });
        };
        let (reply, answer) = crossbeam_channel::bounded(1);
        let request = SavepointRequest {
            root: root.unwrap_or(default_root).clone(),
            stop,
            reply,
        };
        self.sender
            .send(request)
            .map_err(|_| Error::Internal(format!("job {} has ended", self.job_id)))?;
        loop {
            match answer.recv_timeout(POLL) {
                Ok(result) => return result,
                Err(RecvTimeoutError::Timeout) if !give_up() => {}
                Err(_) => {
                    return Err(Error::Internal(format!(
                        "job {} ended before the savepoint completed",
                        self.job_id
                    )));
                }
            }
        }
    }
}

/// The socket server of one job; stops and removes the socket when dropped.
pub(crate) struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    pub fn start(dir: &Path, trigger: SavepointTrigger) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        let path = dir.join(format!("{}.sock", trigger.job_id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| Error::io("listen", &path, e))?;
        info!(job_id = %trigger.job_id(), path = %path.display(), "job control socket ready");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sluice-control".into())
                .spawn(move || serve(&listener, &trigger, &stop))
                .map_err(|e| Error::io("start control thread", &path, e))?
        };
        Ok(ControlServer {
            path,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    /// Stops the thread, which waits in `accept`, by connecting to it once the stop flag is
    /// set: a job ends without waiting out a polling interval (a short batch query used to wait
    /// 20 ms here). Should the connection fail, the thread is left to end with the process.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && UnixStream::connect(&self.path).is_ok()
        {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(listener: &UnixListener, trigger: &SavepointTrigger, stop: &AtomicBool) {
    loop {
        match listener.accept() {
            Ok(_) if stop.load(Ordering::Acquire) => return,
            Ok((stream, _)) => {
                if let Err(error) = handle(stream, trigger, stop) {
                    warn!(job_id = %trigger.job_id(), %error, "job control request failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                warn!(job_id = %trigger.job_id(), %error, "job control socket failed");
                return;
            }
        }
    }
}

fn handle(stream: UnixStream, trigger: &SavepointTrigger, stop: &AtomicBool) -> Result<()> {
    let io = |e| Error::io("job control request", "socket", e);
    stream.set_nonblocking(false).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(io)?;
    let reply = match parse_request(line.trim_end_matches(['\r', '\n'])) {
        Ok((root, stop_job)) => {
            match trigger.trigger(root.as_ref(), stop_job, &|| stop.load(Ordering::Acquire)) {
                Ok(path) => format!("ok {path}\n"),
                Err(error) => format!("error {}\n", one_line(&error.to_string())),
            }
        }
        Err(message) => format!("error {message}\n"),
    };
    (&stream).write_all(reply.as_bytes()).map_err(io)
}

/// `savepoint <0|1> <dir or ->` → (target, stop).
fn parse_request(line: &str) -> std::result::Result<(Option<StatePath>, bool), String> {
    let mut parts = line.splitn(3, ' ');
    let (Some("savepoint"), Some(stop), Some(root)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "unknown request '{line}' (expected: savepoint <0|1> <dir|->)"
        ));
    };
    let stop = match stop {
        "0" => false,
        "1" => true,
        other => return Err(format!("bad stop flag '{other}' (expected 0 or 1)")),
    };
    let root = match root {
        "-" => None,
        root => Some(StatePath::parse(root).map_err(|m| format!("target '{root}': {m}"))?),
    };
    Ok((root, stop))
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// The client side: asks the job listening on `socket` for a savepoint under `root` (default:
/// its checkpoint directory), stopping it after with `stop`; returns the savepoint directory.
pub fn request_savepoint(socket: &Path, root: Option<&StatePath>, stop: bool) -> Result<StatePath> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        Error::io(
            "connect to the job (is it running on this machine?)",
            socket,
            e,
        )
    })?;
    let root = match root {
        Some(root) => {
            let text = root.to_string();
            if text.contains('\n') || text == "-" {
                return Err(Error::Config {
                    key: "savepoint directory".into(),
                    value: text,
                    message: "not a usable directory name".into(),
                });
            }
            text
        }
        None => "-".into(),
    };
    let io = |e| Error::io("job control request", socket, e);
    stream
        .write_all(format!("savepoint {} {root}\n", u8::from(stop)).as_bytes())
        .map_err(io)?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).map_err(io)?;
    let reply = reply.trim_end_matches(['\r', '\n']);
    if let Some(path) = reply.strip_prefix("ok ") {
        return StatePath::parse(path).map_err(|message| {
            Error::Internal(format!(
                "the job answered with a bad savepoint path '{path}': {message}"
            ))
        });
    }
    Err(Error::Internal(format!(
        "savepoint failed: {}",
        reply.strip_prefix("error ").unwrap_or(if reply.is_empty() {
            "the job closed the connection"
        } else {
            reply
        })
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request("savepoint 0 /tmp/a b"),
            Ok((Some(StatePath::Local("/tmp/a b".into())), false))
        );
        assert_eq!(
            parse_request("savepoint 1 s3://b/savepoints"),
            Ok((Some(StatePath::parse("s3://b/savepoints").unwrap()), true))
        );
        assert_eq!(parse_request("savepoint 1 -"), Ok((None, true)));
        assert!(parse_request("savepoint 2 -").is_err());
        assert!(parse_request("cancel").is_err());
    }

    /// A server answers requests until dropped; dropping it ends its thread (which waits in
    /// `accept`) and removes the socket.
    #[test]
    fn server_answers_then_stops_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (sender, _requests) = crossbeam_channel::unbounded();
        let trigger = SavepointTrigger::new(JobId("control-test".into()), None, sender);
        let server = ControlServer::start(dir.path(), trigger).unwrap();
        let socket = dir.path().join("control-test.sock");
        let error = request_savepoint(&socket, None, false).unwrap_err();
        assert!(
            error.to_string().contains("without checkpointing"),
            "{error}"
        );
        drop(server);
        assert!(!socket.exists());
        assert!(request_savepoint(&socket, None, false).is_err());
    }
}
