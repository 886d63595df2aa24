//! A small blocking HTTP/1.1 client for the JobManager's REST API (the CLI's `submit`, `list`,
//! `cancel`, `savepoint` and `stop`): one request per connection, JSON answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sluice_engine::checkpoint::StatePath;

/// What a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("'{0}' is not a JobManager URL (expected http://HOST:PORT)")]
    BadUrl(String),
    #[error("{action} {url}: {source}")]
    Io {
        action: &'static str,
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: malformed HTTP response: {message}")]
    Malformed { url: String, message: String },
}

/// An HTTP response: status code and body.
#[derive(Debug, Clone)]
pub struct RestResponse {
    pub status: u16,
    pub body: String,
    /// The `Location` header, when there is one.
    pub location: Option<String>,
}

impl RestResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.body)
    }

    /// The first of Flink-style `{"errors": [..]}`, else the body.
    pub fn error_message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v["errors"][0].as_str().map(str::to_string))
            .unwrap_or_else(|| self.body.clone())
    }
}

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 3;

/// Sends `method path` with `body` to the JobManager at `base` ("http://host:port" or
/// "host:port"). A standby JobManager (high availability) answers with a redirect to the
/// leader, which is followed (307 and 308 keep the method and body).
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<RestResponse, RestError> {
    let mut response = request_once(base, method, path, body)?;
    for _ in 0..MAX_REDIRECTS {
        let target = match (&response.location, response.status) {
            (Some(location), 307 | 308) => location.clone(),
            _ => break,
        };
        let (base, path) = split_url(&target).ok_or_else(|| RestError::Malformed {
            url: target.clone(),
            message: "redirect to a location that is not http://HOST:PORT/PATH".into(),
        })?;
        response = request_once(base, method, path, body)?;
    }
    Ok(response)
}

/// `http://host:port/path?query` as (`http://host:port`, `/path?query`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/').unwrap_or(rest.len());
    let base = &url[..url.len() - rest.len() + slash];
    let path = &rest[slash..];
    Some((base, if path.is_empty() { "/" } else { path }))
}

/// One request, redirects not followed.
pub fn request_once(
    base: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<RestResponse, RestError> {
    let authority = base
        .strip_prefix("http://")
        .unwrap_or(base)
        .trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || base.starts_with("https://") {
        return Err(RestError::BadUrl(base.to_string()));
    }
    let url = format!("http://{authority}{path}");
    let io = |action| {
        let url = url.clone();
        move |source| RestError::Io {
            action,
            url,
            source,
        }
    };
    let mut stream = TcpStream::connect(authority).map_err(io("connect to"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(io("configure"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    let payload: &[u8] = match body {
        Some((content_type, bytes)) => {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
            bytes
        }
        None => {
            head.push_str("Content-Length: 0\r\n");
            &[]
        }
    };
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(io("send to"))?;
    stream.write_all(payload).map_err(io("send to"))?;

    let mut reader = BufReader::new(stream);
    let malformed = |message: &str| RestError::Malformed {
        url: url.clone(),
        message: message.to_string(),
    };
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io("read from"))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(&format!("status line '{}'", line.trim())))?;
    let mut length = None;
    let mut chunked = false;
    let mut location = None;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(io("read from"))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("location") {
                location = Some(value.to_string());
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(io("read from"))?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| malformed("chunk size"))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader
                .read_exact(&mut body[start..])
                .map_err(io("read from"))?;
            line.clear();
            reader.read_line(&mut line).map_err(io("read from"))?;
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body).map_err(io("read from"))?;
    } else {
        reader.read_to_end(&mut body).map_err(io("read from"))?;
    }
    let body = String::from_utf8(body).map_err(|_| malformed("body is not UTF-8"))?;
    Ok(RestResponse {
        status,
        body,
        location,
    })
}

/// Why a savepoint requested over REST did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SavepointRequestError {
    /// The JobManager could not be reached or answered garbage.
    #[error(transparent)]
    Rest(#[from] RestError),
    /// The JobManager refused the request: unknown job (404), ended job or one without
    /// checkpointing (409), bad target (400).
    #[error("savepoint of job {job_id}: {message} (HTTP {status})")]
    Refused {
        job_id: String,
        status: u16,
        message: String,
    },
    /// The savepoint was triggered but failed (a task declined it, the job failed meanwhile).
    #[error("savepoint of job {job_id} failed: {message}")]
    Failed { job_id: String, message: String },
    /// The JobManager did not report the savepoint complete in time.
    #[error(
        "savepoint of job {job_id} (request {trigger}) not completed after {} s; it may still \
         complete: GET /jobs/{job_id}/savepoints/{trigger}",
        waited.as_secs()
    )]
    TimedOut {
        job_id: String,
        trigger: String,
        waited: Duration,
    },
    /// An answer without the fields Flink's API promises.
    #[error("savepoint of job {job_id}: unexpected answer from the JobManager: {body}")]
    Unexpected { job_id: String, body: String },
}

/// How often a savepoint request's status is polled. The REST API has no push channel; a
/// savepoint takes at least one barrier round trip, so 100 ms adds little to its latency.
const SAVEPOINT_POLL: Duration = Duration::from_millis(100);

/// Triggers a savepoint of `job_id` into `target` (`None`: the JobManager's default, which it
/// may refuse) over `POST /jobs/{id}/savepoints`, then polls
/// `GET /jobs/{id}/savepoints/{trigger}` until it completes or `timeout` passes. With
/// `cancel_job` the job stops after the savepoint (Flink's stop-with-savepoint). Returns the
/// savepoint's directory. Blocks the calling thread.
pub fn savepoint(
    base: &str,
    job_id: &str,
    target: Option<&StatePath>,
    cancel_job: bool,
    timeout: Duration,
) -> Result<StatePath, SavepointRequestError> {
    let mut body = serde_json::json!({ "cancel-job": cancel_job });
    if let Some(target) = target {
        body["target-directory"] = target.to_string().into();
    }
    let body = body.to_string();
    let response = request(
        base,
        "POST",
        &format!("/jobs/{job_id}/savepoints"),
        Some(("application/json", body.as_bytes())),
    )?;
    let unexpected = |response: &RestResponse| SavepointRequestError::Unexpected {
        job_id: job_id.to_string(),
        body: response.body.clone(),
    };
    if response.status != 202 {
        return Err(SavepointRequestError::Refused {
            job_id: job_id.to_string(),
            status: response.status,
            message: response.error_message(),
        });
    }
    let trigger = response
        .json()
        .ok()
        .and_then(|json| json["request-id"].as_str().map(str::to_string))
        .ok_or_else(|| unexpected(&response))?;
    let started = Instant::now();
    loop {
        let response = request(
            base,
            "GET",
            &format!("/jobs/{job_id}/savepoints/{trigger}"),
            None,
        )?;
        if response.status != 200 {
            return Err(SavepointRequestError::Refused {
                job_id: job_id.to_string(),
                status: response.status,
                message: response.error_message(),
            });
        }
        let json = response.json().map_err(|_| unexpected(&response))?;
        match json["status"]["id"].as_str() {
            Some("IN_PROGRESS") => {}
            Some("COMPLETED") => {
                let operation = &json["operation"];
                if let Some(location) = operation["location"].as_str() {
                    return StatePath::parse(location).map_err(|_| unexpected(&response));
                }
                let cause = &operation["failure-cause"];
                let message = cause["message"]
                    .as_str()
                    .or_else(|| cause["stack-trace"].as_str())
                    .ok_or_else(|| unexpected(&response))?;
                return Err(SavepointRequestError::Failed {
                    job_id: job_id.to_string(),
                    message: message.to_string(),
                });
            }
            _ => return Err(unexpected(&response)),
        }
        if started.elapsed() >= timeout {
            return Err(SavepointRequestError::TimedOut {
                job_id: job_id.to_string(),
                trigger,
                waited: started.elapsed(),
            });
        }
        std::thread::sleep(SAVEPOINT_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations_split_into_base_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8082/jobs/abc?mode=cancel"),
            Some(("http://127.0.0.1:8082", "/jobs/abc?mode=cancel"))
        );
        assert_eq!(split_url("http://host:1"), Some(("http://host:1", "/")));
        assert_eq!(split_url("https://host:1/x"), None);
    }
}
