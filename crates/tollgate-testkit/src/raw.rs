//! A client that sends bytes exactly as given, for requests no HTTP library would write:
//! conflicting framing, malformed heads, every odd method and path.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long [`raw_exchange`] waits for the whole response.
pub const RAW_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A response as [`raw_exchange`] read it off the wire.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The headers (names lowercased).
    pub headers: HeaderMap,
    /// The body, with a chunked transfer coding removed.
    pub body: Bytes,
    /// Whether the server closed the connection after a response that said it would
    /// (`Connection: close`), or that ran to the end of the connection. A keep-alive response
    /// is not waited on: `false`.
    pub closed: bool,
}

impl RawResponse {
    /// The body as JSON, if it is JSON.
    ///
    /// ```
    /// use tollgate_testkit::RawResponse;
    ///
    /// let response = RawResponse {
    ///     status: 200,
    ///     headers: http::HeaderMap::new(),
    ///     body: bytes::Bytes::from_static(br#"{"ok":true}"#),
    ///     closed: false,
    /// };
    /// assert_eq!(response.json().unwrap()["ok"], true);
    /// ```
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The value of header `name`, if it is there and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// Opens a TCP connection to `addr`, writes `request` as is, and reads one response: its head,
/// then a body framed by `Transfer-Encoding: chunked`, `Content-Length`, or the end of the
/// connection (none after a `HEAD` request or a 204 or 304). Interim 1xx responses are skipped.
/// After a response that announces `Connection: close`, it waits (up to a second) for the
/// server to close the connection.
///
/// Fails with `UnexpectedEof` when the server closes the connection without a complete
/// response, and with `TimedOut` after [`RAW_EXCHANGE_TIMEOUT`].
///
/// ```
/// use tollgate_testkit::{MockUpstream, raw_exchange};
///
/// # tokio_test::block_on(async {
/// let upstream = MockUpstream::start().await;
/// let response = raw_exchange(upstream.addr(), b"GET /v1/models HTTP/1.1\r\nhost: mock\r\n\r\n")
///     .await
///     .unwrap();
/// assert_eq!(response.status, 200);
/// assert_eq!(response.json().unwrap()["object"], "list");
/// # });
/// ```
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> io::Result<RawResponse> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(request).await?;
        read_response(&mut stream, request.starts_with(b"HEAD ")).await
    };
    tokio::time::timeout(RAW_EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no complete response in time"))?
}

/// Reads one response from `stream` (a connection, or its read half; see [`raw_exchange`]);
/// `to_head` says that the request was a `HEAD`, whose response has no body whatever its
/// headers say.
///
/// ```
/// use tokio::io::AsyncWriteExt;
/// use tollgate_testkit::{MockUpstream, read_response};
///
/// # tokio_test::block_on(async {
/// let upstream = MockUpstream::start().await;
/// let mut stream = tokio::net::TcpStream::connect(upstream.addr()).await?;
/// stream.write_all(b"GET /v1/models HTTP/1.1\r\nhost: mock\r\n\r\n").await?;
/// assert_eq!(read_response(&mut stream, false).await?.status, 200);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub async fn read_response<S>(stream: &mut S, to_head: bool) -> io::Result<RawResponse>
where
    S: AsyncRead + Unpin,
{
    let mut reader = Reader {
        stream,
        buffer: BytesMut::new(),
    };
    loop {
        let (status, headers) = reader.head().await?;
        if (100..200).contains(&status) {
            continue;
        }
        let (body, closed) = if to_head || status == 204 || status == 304 {
            (Bytes::new(), false)
        } else if is_chunked(&headers) {
            (reader.chunked().await?, false)
        } else if let Some(length) = content_length(&headers)? {
            (reader.exactly(length).await?, false)
        } else {
            (reader.until_closed().await?, true)
        };
        let closed = closed || (announces_close(&headers) && reader.closes().await);
        return Ok(RawResponse {
            status,
            headers,
            body,
            closed,
        });
    }
}

struct Reader<'s, S> {
    stream: &'s mut S,
    buffer: BytesMut,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl<S: AsyncRead + Unpin> Reader<'_, S> {
    /// Reads more into the buffer; `UnexpectedEof` when the connection ended.
    async fn fill(&mut self) -> io::Result<()> {
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before a complete response",
            ));
        }
        Ok(())
    }

    /// The next line, without its CRLF.
    async fn line(&mut self) -> io::Result<Bytes> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\r\n") {
                let line = self.buffer.split_to(end).freeze();
                self.buffer.advance(2);
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn head(&mut self) -> io::Result<(u16, HeaderMap)> {
        let status_line = self.line().await?;
        let status = status_line
            .split(|byte| *byte == b' ')
            .nth(1)
            .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok())
            .ok_or_else(|| invalid("a status line without a status code"))?;
        let mut headers = HeaderMap::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                return Ok((status, headers));
            }
            let colon = line
                .iter()
                .position(|byte| *byte == b':')
                .ok_or_else(|| invalid("a header line without a colon"))?;
            let name =
                HeaderName::from_bytes(&line[..colon]).map_err(|_| invalid("a header name"))?;
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
                .map_err(|_| invalid("a header value"))?;
            headers.append(name, value);
        }
    }

    async fn exactly(&mut self, length: usize) -> io::Result<Bytes> {
        while self.buffer.len() < length {
            self.fill().await?;
        }
        Ok(self.buffer.split_to(length).freeze())
    }

    async fn chunked(&mut self) -> io::Result<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let size_line = self.line().await?;
            let size = std::str::from_utf8(&size_line)
                .ok()
                .and_then(|line| usize::from_str_radix(line.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| invalid("a chunk size"))?;
            if size == 0 {
                // Trailers, if any, up to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            body.extend_from_slice(&self.exactly(size).await?);
            if !self.line().await?.is_empty() {
                return Err(invalid("a chunk longer than its size"));
            }
        }
    }

    async fn until_closed(&mut self) -> io::Result<Bytes> {
        while self.stream.read_buf(&mut self.buffer).await? > 0 {}
        Ok(self.buffer.split().freeze())
    }

    /// Whether the server closes the connection within a second, sending nothing more.
    async fn closes(&mut self) -> bool {
        let mut probe = [0; 1];
        let read = tokio::time::timeout(Duration::from_secs(1), self.stream.read(&mut probe));
        matches!(read.await, Ok(Ok(0) | Err(_)))
    }
}

fn announces_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains("close"))
}

fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains("chunked"))
}

fn content_length(headers: &HeaderMap) -> io::Result<Option<usize>> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|value| value.trim().parse().ok())
                .ok_or_else(|| invalid("a content length"))
        })
        .transpose()
}
