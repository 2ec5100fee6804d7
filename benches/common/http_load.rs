//! A minimal HTTP/1.1 keep-alive load client, as wrk is to a web server: one
//! TCP connection per simulated client, each request written in one piece,
//! each answer read by its `Content-Length` or chunked framing and dropped.
//!
//! Why not reqwest: the benchmark's clients run on the same two cores as the
//! server they measure, so a load generator should cost those cores as little
//! as it can. Against reqwest (URL parsing, header maps, its pool and tower
//! stack), paired runs measured 182/185/188 -> 165/182/177 µs of CPU per
//! lookup (clients and server together) and 294/286/300 -> 254/280/254 per
//! create. Every server in the run (idsync and its peers) gets this client.

use std::io;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Where requests go: `host:port` and the path every request path follows.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub authority: String,
    pub prefix: String,
    pub token: String,
}

impl Endpoint {
    /// From a base URL such as `http://127.0.0.1:8080/scim/v2/acme`.
    pub fn parse(base: &str, token: &str) -> Self {
        let rest = base
            .strip_prefix("http://")
            .expect("the benchmark speaks plain HTTP on loopback");
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        Self {
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            token: token.to_string(),
        }
    }
}

/// One keep-alive connection; reconnects when the server closes it.
pub struct Connection {
    endpoint: Endpoint,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    request: Vec<u8>,
}

impl Connection {
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            stream: None,
            buf: Vec::with_capacity(64 * 1024),
            request: Vec::with_capacity(1024),
        }
    }

    /// Sends one request and reads the whole answer. With `must_contain`,
    /// an answer whose body lacks that text is a failure, however it is
    /// framed: a lookup that finds nobody answers 200 too.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        must_contain: Option<&[u8]>,
    ) -> io::Result<Answer> {
        self.request.clear();
        let e = &self.endpoint;
        self.request.extend_from_slice(
            format!(
                "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/scim+json\r\n",
                e.prefix, e.authority, e.token
            )
            .as_bytes(),
        );
        if let Some(body) = body {
            self.request.extend_from_slice(
                format!(
                    "Content-Type: application/scim+json\r\nContent-Length: {}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
        }
        self.request.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            self.request.extend_from_slice(body);
        }
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&self.endpoint.authority).await?;
                s.set_nodelay(true)?;
                self.buf.clear();
                self.stream.insert(s)
            }
        };
        let answer = exchange(stream, &mut self.buf, &self.request, must_contain).await;
        match answer {
            Ok((answer, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(answer)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// What the server answered.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub status: u16,
    /// False only when the body lacked the text it had to contain.
    pub as_expected: bool,
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status) && self.as_expected
    }
}

/// Writes `request`, reads one answer; returns (answer, connection stays open).
async fn exchange(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: &[u8],
    must_contain: Option<&[u8]>,
) -> io::Result<(Answer, bool)> {
    stream.write_all(request).await?;
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("a head that is not text"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = true;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| bad("a bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    buf.drain(..head_end);
    // Found in one piece: within a chunk, or anywhere in a sized body.
    let mut as_expected = must_contain.is_none();
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                fill(stream, buf).await?;
            };
            let size_text =
                std::str::from_utf8(&buf[..line_end]).map_err(|_| bad("a bad chunk size"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("a bad chunk size"))?;
            // The chunk, and the CRLF after it.
            while buf.len() < line_end + 2 + size + 2 {
                fill(stream, buf).await?;
            }
            if let Some(needle) = must_contain.filter(|_| !as_expected) {
                as_expected = find(&buf[line_end + 2..line_end + 2 + size], needle).is_some();
            }
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let length = length.unwrap_or(0);
        while buf.len() < length {
            fill(stream, buf).await?;
        }
        if let Some(needle) = must_contain {
            as_expected = find(&buf[..length], needle).is_some();
        }
        buf.drain(..length);
    }
    Ok((
        Answer {
            status,
            as_expected,
        },
        keep_alive,
    ))
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the server sent {what}"),
    )
}
