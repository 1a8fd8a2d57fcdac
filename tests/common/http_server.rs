//! A minimal HTTP/1.1 server on 127.0.0.1 that each test scripts itself (full answers, cut
//! connections, 206 resumes, error statuses, stalls), recording the head of every request so a
//! test can count and inspect them.
//!
//! It serves one request per connection (always `Connection: close`), on a thread that ends after
//! the scripted number of connections, when the [`Server`] is dropped, or after
//! [`SERVER_LIFETIME`], whichever comes first.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The server never waits longer than this for a client, so no thread outlives its test by much.
pub const SERVER_LIFETIME: Duration = Duration::from_secs(20);

/// A running scripted server and what it has seen: the head of every request, in order.
pub struct Server {
    base: String,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Serves at most `connections` connections, one request each, calling `respond` with the
    /// connection's index and the request head.
    pub fn start(
        connections: usize,
        respond: impl Fn(usize, &str, &mut TcpStream) + Send + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (Arc::clone(&heads), Arc::clone(&stop));
        thread::spawn(move || {
            let deadline = Instant::now() + SERVER_LIFETIME;
            let mut served = 0;
            while served < connections
                && Instant::now() < deadline
                && !stopped.load(Ordering::Relaxed)
            {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        let head = read_head(&mut stream);
                        seen.lock().unwrap().push(head.clone());
                        respond(served, &head, &mut stream);
                        served += 1;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        Server { base, heads, stop }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// The heads of the requests received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads up to the blank line that ends a request head (bounded in size).
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The value of header `name` in a request head, if present.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Writes a status line and headers (always `Connection: close`), then `body`.
pub fn send(stream: &mut TcpStream, status: &str, headers: &[String], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for line in headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    // The client may already have hung up (e.g. after a timeout); that is fine here.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush());
}

/// Answers 200 with the whole `body`.
pub fn send_full(stream: &mut TcpStream, body: &[u8]) {
    send(
        stream,
        "200 OK",
        &[format!("Content-Length: {}", body.len())],
        body,
    );
}

/// Announces the whole body, sends only its first half and closes the connection.
pub fn send_cut(stream: &mut TcpStream, body: &[u8]) {
    send(
        stream,
        "200 OK",
        &[format!("Content-Length: {}", body.len())],
        &body[..body.len() / 2],
    );
    let _ = stream.shutdown(Shutdown::Both);
}

/// Answers a `Range: bytes=N-` request with 206 and the rest of `body`.
pub fn send_range(stream: &mut TcpStream, head: &str, body: &[u8]) {
    let start: usize = header(head, "range")
        .and_then(|range| {
            range
                .strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse()
                .ok()
        })
        .expect("the resumed request carries `Range: bytes=N-`");
    let headers = [
        format!("Content-Length: {}", body.len() - start),
        format!(
            "Content-Range: bytes {start}-{}/{}",
            body.len() - 1,
            body.len()
        ),
    ];
    send(stream, "206 Partial Content", &headers, &body[start..]);
}

/// The SHA-256 of `bytes` in hex, as a recipe pins it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
