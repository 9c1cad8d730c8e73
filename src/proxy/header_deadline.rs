//! `server.client_header_timeout`. Pingora 0.9.1 reads a request header before any hook
//! runs, bounding only each single read (by its 60 s keepalive timeout), so a client that
//! trickles its header a byte at a time could hold a connection for ever. [`HeaderDeadline`]
//! wraps the proxy app (`server.rs` builds it) and gives each connection's stream a
//! deadline for its headers: armed when the connection opens and, on a kept-alive
//! connection, by the first byte after the gateway has written; disarmed by the blank
//! line that ends a header. When it passes, the next read fails and Pingora closes the
//! connection, as nginx does (no 408 is sent); `gateway_client_aborts_total` counts it as
//! `header_timeout` under `route="unmatched"` (no route is known yet). HTTP/1 only: an
//! HTTP/2 connection (ALPN `h2` on the TLS listener) is passed through untouched.
//!
//! One approximation: the watch cannot tell a new request from the rest of a body, so on a
//! streaming route whose backend answers before the upload ends, what the client sends
//! after that answer is timed as a header (and an upload still going after
//! `client_header_timeout` is cut). Buffered routes are not affected: their bodies are in
//! before anything is written.
//!
//! [`HeaderWatch`] holds the logic, time injected; [`DeadlineStream`] is the plumbing.

use std::{
    fmt,
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::{
    apps::ServerApp,
    protocols::{
        ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
        Stream, TimingDigest, UniqueID, UniqueIDType,
        raw_connect::ProxyDigest,
        tls::{SslDigest, TlsRef},
    },
    server::ShutdownWatch,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use crate::{
    metrics::{self, ClientAbort},
    state::State,
};

/// The proxy app, with a header deadline on every connection it is given.
pub struct HeaderDeadline<A> {
    inner: Arc<A>,
    state: Arc<ArcSwap<State>>,
}

impl<A> HeaderDeadline<A> {
    /// `state` gives the running `server.client_header_timeout`, read per connection so a
    /// reload changes it.
    pub fn new(inner: A, state: Arc<ArcSwap<State>>) -> Self {
        HeaderDeadline {
            inner: Arc::new(inner),
            state,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderDeadline<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // HTTP/2 (negotiated by ALPN on the TLS listener) frames its headers in binary: the
        // watch reads HTTP/1 only.
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.inner.process_new(stream, shutdown).await;
        }
        let timeout = self.state.load().config.server.client_header_timeout;
        let stream: Stream = Box::new(DeadlineStream::new(stream, timeout));
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// Where a connection stands with respect to its header deadline.
#[derive(Debug, Clone)]
pub struct HeaderWatch {
    timeout: Duration,
    /// A header is expected (the connection is new, or the gateway answered the last one).
    awaiting: bool,
    deadline: Option<Instant>,
    /// How much of a header's end has been seen: 1 after `\n`, 2 after `\n\r`.
    end: u8,
}

impl HeaderWatch {
    /// A new connection: its first header is due within `timeout` of `now`.
    pub fn new(timeout: Duration, now: Instant) -> Self {
        HeaderWatch {
            timeout,
            awaiting: true,
            deadline: Some(now + timeout),
            end: 0,
        }
    }

    /// When the header being awaited must be complete, if one is being awaited.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// `bytes` arrived from the client at `now`.
    pub fn on_read(&mut self, bytes: &[u8], now: Instant) {
        if !self.awaiting || bytes.is_empty() {
            return;
        }
        self.deadline.get_or_insert(now + self.timeout);
        for &byte in bytes {
            // A header ends with an empty line: `\n\n` or `\n\r\n`.
            self.end = match (self.end, byte) {
                (1 | 2, b'\n') => {
                    self.awaiting = false;
                    self.deadline = None;
                    self.end = 0;
                    return;
                }
                (_, b'\n') => 1,
                (1, b'\r') => 2,
                _ => 0,
            };
        }
    }

    /// The gateway wrote to the client: what it sends next begins a new request, whose
    /// deadline starts with its first byte (an idle kept-alive connection is Pingora's
    /// keepalive timeout's business).
    pub fn on_write(&mut self) {
        if !self.awaiting {
            self.awaiting = true;
            self.deadline = None;
            self.end = 0;
        }
    }
}

/// A client connection whose reads fail once a header deadline has passed.
pub struct DeadlineStream {
    inner: Stream,
    watch: HeaderWatch,
    timer: Option<Pin<Box<Sleep>>>,
    /// The deadline passed: every later read fails too, and it was counted once.
    expired: bool,
}

impl DeadlineStream {
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        DeadlineStream {
            inner,
            watch: HeaderWatch::new(timeout, Instant::now()),
            timer: None,
            expired: false,
        }
    }

    /// `Ready` once the current deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.watch.deadline() else {
            self.timer = None;
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }
}

impl fmt::Debug for DeadlineStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineStream")
            .field("inner", &self.inner)
            .field("watch", &self.watch)
            .finish()
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired || this.poll_deadline(cx).is_ready() {
            if !this.expired {
                this.expired = true;
                this.timer = None;
                metrics::CLIENT_ABORTS
                    .with_label_values(&[metrics::UNMATCHED, ClientAbort::HeaderTimeout.as_str()])
                    .inc();
            }
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request header not received within client_header_timeout",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = buf.filled().get(before..).unwrap_or_default();
            this.watch.on_read(fresh, Instant::now());
        }
        polled
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            if written > 0 {
                this.watch.on_write();
            }
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = polled {
            if written > 0 {
                this.watch.on_write();
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn a_new_connection_owes_its_first_header_from_the_start() {
        let t0 = Instant::now();
        let mut watch = HeaderWatch::new(TIMEOUT, t0);
        assert_eq!(watch.deadline(), Some(t0 + TIMEOUT));
        // A trickle does not move the deadline.
        watch.on_read(b"GET / HTTP/1.1\r\n", t0 + Duration::from_secs(5));
        watch.on_read(b"Host: x\r\n", t0 + Duration::from_secs(9));
        assert_eq!(watch.deadline(), Some(t0 + TIMEOUT));
        watch.on_read(b"\r\nbody", t0 + Duration::from_secs(9));
        assert_eq!(watch.deadline(), None);
    }

    #[test]
    fn the_end_of_a_header_is_found_across_reads_and_with_bare_newlines() {
        let t0 = Instant::now();
        for pieces in [
            &[&b"GET / HTTP/1.1\r\nHost: x\r"[..], b"\n\r", b"\n"][..],
            &[b"GET / HTTP/1.1\nHost: x\n", b"\n"],
            &[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
        ] {
            let mut watch = HeaderWatch::new(TIMEOUT, t0);
            for piece in pieces {
                assert!(watch.deadline().is_some());
                watch.on_read(piece, t0);
            }
            assert_eq!(watch.deadline(), None, "{pieces:?}");
        }
        // A single line break inside the header is not its end.
        let mut watch = HeaderWatch::new(TIMEOUT, t0);
        watch.on_read(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n", t0);
        assert!(watch.deadline().is_some());
    }

    #[test]
    fn on_a_kept_alive_connection_the_next_header_is_timed_from_its_first_byte() {
        let t0 = Instant::now();
        let mut watch = HeaderWatch::new(TIMEOUT, t0);
        watch.on_read(b"GET / HTTP/1.1\r\n\r\n", t0);
        watch.on_write();
        // Idle between requests: no header deadline (Pingora's keepalive timeout rules).
        assert_eq!(watch.deadline(), None);
        let t1 = t0 + Duration::from_secs(30);
        watch.on_read(b"G", t1);
        assert_eq!(watch.deadline(), Some(t1 + TIMEOUT));
        // Further writes while the header is awaited change nothing.
        watch.on_write();
        assert_eq!(watch.deadline(), Some(t1 + TIMEOUT));
    }

    #[test]
    fn body_bytes_after_the_header_are_not_scanned() {
        let t0 = Instant::now();
        let mut watch = HeaderWatch::new(TIMEOUT, t0);
        watch.on_read(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", t0);
        watch.on_read(b"a=1\n\nb=2", t0 + Duration::from_secs(60));
        assert_eq!(watch.deadline(), None);
    }
}
