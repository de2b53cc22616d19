//! One bounded HTTP/1.1 GET of Patroni's `/cluster` (std `TcpStream`, every step under
//! one deadline), and the members of its JSON answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Member, Url};

/// The most of an answer read: a cluster's `/cluster` is a few hundred bytes a member.
const MAX_ANSWER: usize = 1 << 20;

/// GETs `{url}/cluster` within `timeout` (connect, send and read together); returns
/// its members, or why not.
pub fn cluster(url: &Url, timeout: Duration) -> Result<Vec<Member>, String> {
    let body = get(url, "/cluster", timeout)?;
    members(&body)
}

/// One GET; the body of a 200 answer.
pub fn get(url: &Url, endpoint: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .collect();
    let mut last = format!("no address for {}", url.host);
    let mut stream = None;
    for addr in addrs {
        let Some(left) = remaining(deadline) else {
            break;
        };
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    let Some(mut stream) = stream else {
        return Err(if remaining(deadline).is_none() {
            format!("no answer within {:.3} s ({last})", timeout.as_secs_f64())
        } else {
            last
        });
    };
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\
         User-Agent: django-replica-router\r\nConnection: close\r\n\r\n",
        url.target(endpoint),
        url.host_header()
    );
    let timed_out = || format!("no answer within {:.3} s", timeout.as_secs_f64());
    stream
        .set_write_timeout(remaining(deadline))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| io_error(&e, &timed_out))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Some(left) = remaining(deadline) else {
            return Err(timed_out());
        };
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(&e, &timed_out)),
        }
        if raw.len() > MAX_ANSWER {
            return Err(format!("an answer over {MAX_ANSWER} bytes"));
        }
        if complete(&raw) {
            break;
        }
    }
    response_body(&raw)
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

fn io_error(e: &std::io::Error, timed_out: &dyn Fn() -> String) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => timed_out(),
        _ => e.to_string(),
    }
}

/// Where the head ends (after the blank line), if it has.
fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The head's headers, lower-cased names.
fn headers(head: &str) -> impl Iterator<Item = (String, &str)> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
}

/// Whether a `Content-Length` answer is all in (else: read until the server closes).
fn complete(raw: &[u8]) -> bool {
    let Some(end) = head_end(raw) else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let length = headers(&head)
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    length.is_some_and(|len| raw.len() >= end + len)
}

/// The body of a complete HTTP/1.x answer with status 200 (de-chunked if need be).
pub fn response_body(raw: &[u8]) -> Result<Vec<u8>, String> {
    let end = head_end(raw).ok_or("an incomplete HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status_line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let (proto, status) = (parts.next(), parts.next());
    if !proto.is_some_and(|p| p.starts_with("HTTP/1.")) {
        return Err("not an HTTP answer".into());
    }
    if status != Some("200") {
        return Err(format!("HTTP status {}", status.unwrap_or("missing")));
    }
    let mut body = &raw[end..];
    let mut chunked = false;
    for (k, v) in headers(&head) {
        match k.as_str() {
            "content-length" => {
                let len: usize = v.parse().map_err(|_| "a bad Content-Length")?;
                body = body.get(..len).ok_or("a truncated answer")?;
            }
            "transfer-encoding" if v.eq_ignore_ascii_case("chunked") => chunked = true,
            _ => {}
        }
    }
    if chunked {
        dechunk(body)
    } else {
        Ok(body.to_vec())
    }
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a truncated chunked answer")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "a bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("a truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("a truncated chunk")?;
    }
}

/// The members of a `/cluster` answer.
pub fn members(body: &[u8]) -> Result<Vec<Member>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = v
        .get("members")
        .and_then(Value::as_array)
        .ok_or("no \"members\" list in the answer")?;
    let text = |m: &Value, k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let number = |m: &Value, k: &str| m.get(k).and_then(Value::as_u64);
    Ok(list
        .iter()
        .filter(|m| m.is_object())
        .map(|m| Member {
            name: text(m, "name"),
            host: text(m, "host"),
            port: number(m, "port").and_then(|p| u16::try_from(p).ok()),
            role: text(m, "role"),
            state: text(m, "state"),
            timeline: number(m, "timeline").and_then(|t| u32::try_from(t).ok()),
            lag: number(m, "lag"),
        })
        .collect())
}
