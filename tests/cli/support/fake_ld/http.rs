//! The fake's minimal HTTP/1.1 server: one thread per connection, keep-alive, request bodies
//! by `Content-Length` or chunked (Go's clients send event posts chunked). It routes `GET /all`
//! to the stream, event posts to a 202, and everything else to the REST API.

use super::{rest, stream, Answer, Logged, State};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Serves one connection's requests in order until the client closes it (or the fake goes down).
pub(super) fn serve(conn: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let Some(body) = read_body(&mut reader, &headers) else {
            return;
        };
        let logged = Logged {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            status: None,
        };
        let close = logged
            .header("Connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let route = logged.path.split('?').next().unwrap_or("").to_owned();
        let answered = match (logged.method.as_str(), route.as_str()) {
            ("GET", "/all") => return stream::serve(writer, logged, state, stop),
            ("POST", "/bulk" | "/diagnostic") => {
                state.lock().unwrap().log.push(Logged {
                    status: Some(202),
                    ..logged
                });
                write_answer(&mut writer, 202, &[], "")
            }
            _ => match handle(logged, state, stop) {
                Some((status, extra, answer)) => {
                    write_answer(&mut writer, status, &extra, &answer.to_string())
                }
                None => return,
            },
        };
        if answered.is_err() || close {
            return;
        }
    }
}

/// The request body: `Content-Length` bytes, or the chunks of a chunked body.
fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Option<Vec<u8>> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if header("Transfer-Encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                return Some(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let len: usize = header("Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// Writes one answer with a JSON (or empty) body.
pub(super) fn write_answer(
    writer: &mut impl Write,
    status: u16,
    extra: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    writer.write_all(head.as_bytes())?;
    writer.write_all(body.as_bytes())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        303 => "See Other",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Logs and answers one request; `None` when it is held unanswered until the fake stops.
fn handle(logged: Logged, state: &Mutex<State>, stop: &AtomicBool) -> Option<Answer> {
    let mut s = state.lock().unwrap();
    if s.answer_only.is_some_and(|n| s.answered >= n) {
        s.log.push(logged);
        drop(s);
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return None;
    }
    s.answered += 1;
    let flag = logged.flag();
    let answer = rest::respond(&mut s, &logged);
    if logged.method == "PATCH" && answer.0 == 200 && s.hold_applied > 0 {
        s.hold_applied -= 1;
        s.log.push(logged);
        drop(s);
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return None;
    }
    s.log.push(Logged {
        status: Some(answer.0),
        ..logged
    });
    let delay = s.delay + std::mem::take(&mut s.slow);
    if !delay.is_zero() {
        let n = s.in_flight.entry(flag.clone()).or_default();
        *n += 1;
        let n = *n;
        s.max_in_flight_per_flag = s.max_in_flight_per_flag.max(n);
        s.total_in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.total_in_flight);
        drop(s);
        std::thread::sleep(delay);
        let mut s = state.lock().unwrap();
        *s.in_flight.get_mut(&flag).unwrap() -= 1;
        s.total_in_flight -= 1;
    }
    Some(answer)
}
