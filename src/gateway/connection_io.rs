//! The byte stream of one client connection, with two guards hyper lacks.
//!
//! - **Problem documents for the errors hyper answers by itself.** A request
//!   hyper cannot parse (a malformed request line or header, a head over its
//!   buffer, a URI too long) never reaches the router: hyper writes `400`,
//!   `414` or `431` with an empty body and closes the connection. Every other
//!   error Herald sends is an RFC 9457 problem document, so this wrapper
//!   recognises exactly that automatic response as hyper writes it (status
//!   400/414/431 and `content-length: 0`; the router never sends one: its
//!   errors all have bodies) and writes a problem document in its place.
//! - **A deadline on stalled writes.** A client that stops reading its
//!   responses (its receive window full) gets an error after the limit
//!   instead of holding the connection for ever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A client connection with both guards.
pub struct ConnectionIo<T> {
    inner: T,
    /// A replacement being written: its bytes, how many are written, and the
    /// length of the original buffer to report once done.
    replacing: Option<(Vec<u8>, usize, usize)>,
    /// Longest a write or flush may stay pending.
    write_limit: Duration,
    /// Armed while a write or flush is pending.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> ConnectionIo<T> {
    /// Wraps a connection; writes may stall at most `write_limit`.
    pub fn new(inner: T, write_limit: Duration) -> Self {
        Self {
            inner,
            replacing: None,
            write_limit,
            stalled: None,
        }
    }

    /// Called when the inner write or flush is pending: fails once the stall
    /// has lasted the limit.
    fn check_stall<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let limit = self.write_limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Passes on the inner result, disarming the stall timer when it is ready.
    fn track<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

/// The problem document for hyper's automatic response in `buf`, if it is one.
fn replacement_for(buf: &[u8]) -> Option<Vec<u8>> {
    let status_line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let status_line = std::str::from_utf8(&buf[..status_line_end]).ok()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    let status: u16 = parts.next()?.parse().ok()?;
    if !version.starts_with("HTTP/1.") || !matches!(status, 400 | 414 | 431) {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    if !head.ends_with("\r\n\r\n") || !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (code, title, detail) = match status {
        431 => (
            "header-too-large",
            "Request Header Fields Too Large",
            "the request head is larger than the server accepts",
        ),
        414 => (
            "uri-too-long",
            "URI Too Long",
            "the request URI is longer than the server accepts",
        ),
        _ => (
            "malformed-request",
            "Bad Request",
            "the request is not valid HTTP (request line or header)",
        ),
    };
    let body = serde_json::json!({
        "type": format!("/problems/{code}"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    })
    .to_string();
    Some(
        format!(
            "{version} {status} {title}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnectionIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnectionIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none()
            && let Some(bytes) = replacement_for(buf)
        {
            this.replacing = Some((bytes, 0, buf.len()));
        }
        let Some((bytes, mut written, original)) = this.replacing.take() else {
            let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
            return this.track(cx, polled);
        };
        while written < bytes.len() {
            let polled = Pin::new(&mut this.inner).poll_write(cx, &bytes[written..]);
            match this.track(cx, polled) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    this.replacing = Some((bytes, written, original));
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(original))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each response head as one buffer, which
    // is what `replacement_for` recognises.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_automatic_responses_are_replaced_and_nothing_else() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 24 Nov 2026 10:00:00 GMT\r\n\r\n";
        let replaced = String::from_utf8(replacement_for(auto).unwrap()).unwrap();
        assert!(replaced.starts_with("HTTP/1.1 431 "));
        assert!(replaced.contains("application/problem+json"));
        let (_, body) = replaced.split_once("\r\n\r\n").unwrap();
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 431);
        assert_eq!(problem["code"], "header-too-large");
        assert!(replaced.contains(&format!("content-length: {}\r\n", body.len())));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 120\r\n\r\n";
        assert!(replacement_for(ours).is_none());
        let ok = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement_for(ok).is_none());
    }
}
