//! A small blocking HTTP/1.1 client for the JobManager's REST API (the CLI's `submit` and
//! `list`): one request per connection, JSON answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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

/// Sends `method path` with `body` to the JobManager at `base` ("http://host:port" or
/// "host:port").
pub fn request(
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
    Ok(RestResponse { status, body })
}
