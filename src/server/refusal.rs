//! Requests hyper refuses before the pipeline sees them: a malformed request line or header,
//! an unknown version (400), headers over the limit (431), a target too long (414).
//!
//! hyper answers those itself with a status line and an empty body, and closes. That tells a
//! developer staring at `curl -v` nothing, and the request would leave no trace in the store.
//! [`Refusals`] wraps a connection's plaintext stream (under hyper, over TLS): it keeps the
//! bytes of the request being read (up to [`KEPT_BYTES`]), and when hyper writes a response
//! while no request is being served — which only its own refusals do — it writes ours instead:
//! the same status, a plain-text body that says what was wrong, `connection: close`. What was
//! kept is then the refused request, which the listener records ([`record_refused`]).
//!
//! The same bytes serve a request hyper accepts: its head is read from them once, for where
//! the request ends and for its headers as they were sent, which the pipeline records
//! ([`ReceivedHead`]: `X-Vobiz-Signature-V3`, not hyper's `x-vobiz-signature-v3`).
//!
//! A head that is still arriving when the header timeout passes (a stalled or trickling
//! sender) is answered `408` the same way, and what came of it is recorded: hyper would
//! close the connection without a word (see [`Refusals::answering_late_heads`]).
//!
//! HTTP/2 connections (their preface is the first thing read) are passed through untouched:
//! h2 reports protocol errors in frames of its own, and its header names are lower case.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::body_end::{BodyLeft, Chunks};
use super::watch::Activity;
use crate::exchange::{now_micros, Exchange, Headers, Outcome, RequestRecord};
use crate::pipeline::{ConnectionInfo, Proxy};
use crate::signature::{Verdict, VerdictStatus};

/// How much of a refused request is kept for the record: enough for any sane request line
/// and headers; a header flood is recorded by its start.
pub const KEPT_BYTES: usize = 16 * 1024;

/// The statuses hyper refuses a request with: a malformed request line or header, a target
/// too long, headers over the limit (in size or number).
const REFUSALS: [u16; 3] = [400, 414, 431];

/// Ours for a head that did not all arrive within the header timeout.
const LATE_HEAD: u16 = 408;

/// How an HTTP/2 connection's preface starts.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2";

/// How hyper's refusals end their head: no body.
const EMPTY_BODY: &[u8] = b"\r\ncontent-length: 0\r\n";

/// What the listener learns of a refusal once the connection has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    /// Why, as the sender was told.
    pub reason: String,
    /// The start of the refused request, as received.
    pub received: Vec<u8>,
}

impl Refused {
    /// Ours for a head that did not all arrive in time, not one of hyper's refusals.
    pub fn late_head(&self) -> bool {
        self.status == LATE_HEAD
    }
}

/// The start of the request being read on a connection, shared by its stream (which keeps
/// it) and its service (which takes it when hyper hands over the request).
#[derive(Debug, Default)]
pub struct RequestStart(Mutex<Kept>);

#[derive(Debug, Default)]
struct Kept {
    bytes: Vec<u8>,
    /// `bytes` came after the end of a request the service took: a request pipelined behind
    /// it (read in the same piece), which hyper reads next.
    pipelined: bool,
    /// The request taken last was a `HEAD`: its answer has no body, whatever it declares.
    bodiless_answer: bool,
    /// What of the body of the request taken last is still to arrive. What arrives after it
    /// is the next request.
    to_come: BodyLeft,
    /// Bytes were dropped for want of room (past [`KEPT_BYTES`]): where the request ends
    /// cannot be counted from what was kept.
    cut: bool,
}

impl Kept {
    fn append(&mut self, read: &[u8]) {
        let room = KEPT_BYTES.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&read[..read.len().min(room)]);
        self.cut |= read.len() > room;
    }
}

impl RequestStart {
    /// The head of `request`, which hyper hands to the service, read from the bytes kept for
    /// it: its headers as the sender wrote them (order, repeats, the names' case), when those
    /// bytes are its head. What came after its end (a request pipelined behind it) stays, as
    /// the start of the next one.
    pub fn take_for<B>(&self, request: &hyper::Request<B>) -> Option<Headers> {
        let mut kept = self.lock();
        kept.pipelined = false;
        kept.bodiless_answer = request.method() == hyper::Method::HEAD;
        let mut bytes = std::mem::take(&mut kept.bytes);
        let head = parse_head(&bytes, request);
        kept.to_come = match (&head, kept.cut) {
            (Some((length, _)), false) => {
                let mut body = body_of(request);
                let counted = body.count_off(&bytes[*length..]);
                if body.ended() {
                    kept.bytes = bytes.split_off(length + counted);
                    kept.pipelined = !kept.bytes.is_empty();
                }
                body
            }
            _ => BodyLeft::Unknown,
        };
        kept.cut = false;
        head.map(|(_, headers)| headers)
    }

    /// Whether the body of the request taken last was not all read (as far as its length or
    /// its chunks tell): its sender may still be sending it.
    pub fn body_unread(&self) -> bool {
        self.lock().to_come.unread()
    }

    /// What was kept, leaving nothing.
    fn take(&self) -> Vec<u8> {
        let mut kept = self.lock();
        kept.pipelined = false;
        kept.to_come = BodyLeft::Unknown;
        kept.cut = false;
        std::mem::take(&mut kept.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The head of `request` read from `bytes` as hyper's parser reads it (blank lines before
/// it, bare line feeds): its length and its headers as written. `None` when the bytes are not
/// this request's head (cut short, another request's).
fn parse_head<B>(bytes: &[u8], request: &hyper::Request<B>) -> Option<(usize, Headers)> {
    if bytes.is_empty() {
        return None; // HTTP/2: no bytes are kept
    }
    let count = request.headers().len();
    // As many slots as hyper found headers: a head with more is not this request's.
    let mut slots = vec![httparse::EMPTY_HEADER; count];
    let mut parsed = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(length) = parsed.parse(bytes).ok()? else {
        return None;
    };
    let target = request.uri().path_and_query().map(|pq| pq.as_str());
    let map = request.headers();
    // Every header as hyper read it too, value and all: the record and the signature check
    // take these, and they must be the request's own, never bytes that only look like it.
    let same = parsed.method == Some(request.method().as_str())
        && (parsed.path == target || parsed.path == Some(&request.uri().to_string()))
        && parsed.headers.len() == count
        && parsed.headers.iter().all(|header| {
            map.get_all(header.name)
                .iter()
                .any(|value| value.as_bytes() == header.value)
        });
    same.then(|| {
        let headers = parsed.headers.iter();
        let written = headers.map(|header| (header.name.to_string(), header.value.to_vec()));
        (length, Headers(written.collect()))
    })
}

/// How `request`'s body ends, by its head: after the length its `Content-Length` declares
/// (none: nothing), after its last chunk, or unknown (another transfer coding).
fn body_of<B>(request: &hyper::Request<B>) -> BodyLeft {
    let headers = request.headers();
    let codings = headers.get_all(hyper::header::TRANSFER_ENCODING);
    if let Some(last) = codings.iter().next_back() {
        // hyper reads a body as chunked only when chunked is the last coding named.
        let chunked = last.to_str().is_ok_and(|codings| {
            let final_coding = codings.rsplit(',').next().unwrap_or("");
            final_coding.trim().eq_ignore_ascii_case("chunked")
        });
        return match chunked {
            true => BodyLeft::Chunked(Chunks::default()),
            false => BodyLeft::Unknown,
        };
    }
    match headers.get(hyper::header::CONTENT_LENGTH) {
        Some(length) => length
            .to_str()
            .ok()
            .and_then(|length| length.trim().parse().ok())
            .map_or(BodyLeft::Unknown, BodyLeft::Bytes),
        None => BodyLeft::Bytes(0),
    }
}

/// A request's headers as its sender wrote them (see [`RequestStart::take_for`]): a request
/// extension the listener adds and the pipeline takes out.
#[derive(Clone, Debug)]
pub struct ReceivedHead(pub Headers);

/// The refusal of a connection, shared between its stream and the listener.
#[derive(Debug, Default)]
pub struct RefusalSlot(Mutex<Option<Refused>>);

impl RefusalSlot {
    pub fn take(&self) -> Option<Refused> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put(&self, refused: Refused) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(refused);
    }
}

/// A connection's plaintext stream, watched for hyper's refusals (see the module docs).
pub struct Refusals<IO> {
    io: IO,
    activity: Arc<Activity>,
    slot: Arc<RefusalSlot>,
    /// Who answers, at the start of each body (`vobiz-tunnel`, `vobiz-tunnel relay`).
    speaker: &'static str,
    /// What the connection speaks, told by its first bytes (not known before them).
    protocol: Protocol,
    /// The TLS handshake agreed on `h2`.
    alpn_h2: bool,
    /// Bytes read since the last request began being served (`None`: nobody reads them).
    received: Option<Arc<RequestStart>>,
    /// Bytes were read while no request was served since the last answer was written: only
    /// then, or with `pipelined`, can hyper be refusing something (once the answer's body is
    /// all written: `body_left`).
    unanswered_bytes: bool,
    /// When the last answer was written, the bytes of a request pipelined behind its request
    /// were already kept (read in the same piece): hyper reads that one next.
    pipelined: bool,
    /// Bytes of the last answer's body still to be written (`u64::MAX`: until the connection
    /// closes). A piece of a body may look like anything, a refusal included.
    body_left: u64,
    /// `Activity::started` when `received` began.
    started: u64,
    /// Responses to served requests written so far.
    answered: u64,
    /// Our answer in place of hyper's, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    /// How long a request's head may take to arrive (`None`: hyper's own timeout closes),
    /// and the flag that sets it, for the 408's reason.
    head_timeout: Option<(Duration, Option<&'static str>)>,
    /// The deadline of the head being received, for the request that begins as the
    /// `Activity::started`-th plus one.
    head_timer: Option<(u64, Pin<Box<Sleep>>)>,
    /// A late head was answered: hyper reads nothing more.
    ended_reading: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Unknown,
    Http1,
    Http2,
}

impl<IO> Refusals<IO> {
    /// `received` gets the start of each request (for the pipeline and the record of a
    /// refusal); `None` where nothing records them.
    pub fn new(
        io: IO,
        activity: Arc<Activity>,
        slot: Arc<RefusalSlot>,
        received: Option<Arc<RequestStart>>,
        speaker: &'static str,
    ) -> Self {
        Refusals {
            io,
            activity,
            slot,
            speaker,
            protocol: Protocol::Unknown,
            alpn_h2: false,
            received,
            unanswered_bytes: false,
            pipelined: false,
            body_left: 0,
            started: 0,
            answered: 0,
            answer: None,
            head_timeout: None,
            head_timer: None,
            ended_reading: false,
        }
    }

    /// Answers `408`, and keeps what came for the record, when a request's head is still
    /// arriving `timeout` after the connection opened or its last request ended (set by the
    /// command-line `flag`, if one does). hyper's own header timeout must be longer: it
    /// closes without an answer.
    pub fn answering_late_heads(mut self, timeout: Duration, flag: Option<&'static str>) -> Self {
        self.head_timeout = Some((timeout, flag));
        self
    }

    /// The connection's ALPN says HTTP/2. What it sends still decides (hyper serves HTTP/1
    /// to a client that negotiated `h2` and speaks HTTP/1 anyway), but a first read too short
    /// to tell is then taken for the start of HTTP/2's preface.
    pub fn speaking_h2(mut self, h2: bool) -> Self {
        self.alpn_h2 = h2;
        self
    }

    /// Keeps what was just read, if it may be the start of a request hyper will refuse.
    fn keep(&mut self, read: &[u8]) {
        if self.protocol == Protocol::Unknown && !read.is_empty() {
            // An HTTP/2 client starts with its preface, by ALPN or with prior knowledge (a
            // first read shorter than the marker is taken for HTTP/1 unless ALPN said h2).
            let h2 = read.starts_with(H2_PREFACE) || (self.alpn_h2 && H2_PREFACE.starts_with(read));
            self.protocol = match h2 {
                true => Protocol::Http2,
                false => Protocol::Http1,
            };
        }
        if self.protocol != Protocol::Http1 || read.is_empty() {
            return;
        }
        let Some(received) = &self.received else {
            self.unanswered_bytes |= self.activity.in_flight() == 0;
            return;
        };
        let mut kept = received.lock();
        // The rest of the served request's body is not the start of anything.
        let body = kept.to_come.count_off(read);
        let read = &read[body..];
        if read.is_empty() {
            return;
        }
        if self.activity.in_flight() > 0 {
            // After the body of the request being served: one pipelined behind it, in a piece
            // of its own (told apart only where that body's end is known).
            if kept.to_come.known() {
                kept.append(read);
                kept.pipelined = true;
            }
            return;
        }
        self.unanswered_bytes = true;
        // A request began being served since: what was kept was its start, not this one's
        // (unless it is what was pipelined behind it, the start of this one).
        let started = self.activity.started();
        if started != self.started {
            self.started = started;
            if !kept.pipelined {
                kept.bytes.clear();
            }
            kept.pipelined = false;
        }
        kept.append(read);
    }

    /// Whether bytes of a request not yet served are kept: pipelined behind the last one, or
    /// read since it was served.
    fn holds_next_request(&self) -> bool {
        let Some(received) = &self.received else {
            return false;
        };
        let kept = received.lock();
        !kept.bytes.is_empty() && (kept.pipelined || self.started == self.activity.started())
    }

    /// Whether what is kept of the next request is the start of a head: more than the blank
    /// lines a client may send before it (RFC 9112 §2.2), or after a body, which hyper skips.
    fn holds_a_head_start(&self) -> bool {
        let Some(received) = &self.received else {
            return false;
        };
        let kept = received.lock();
        (kept.pipelined || self.started == self.activity.started())
            && kept.bytes.iter().any(|b| !matches!(b, b'\r' | b'\n'))
    }

    /// What hyper is writing, judged by its first bytes: a response head written when every
    /// request begun so far has had its answer, with hyper's empty body, is a refusal. (A
    /// served request's future ends before its response is written, so "none in flight"
    /// would not tell them apart.)
    fn classify(&self, buf: &[u8]) -> Writing {
        if self.protocol != Protocol::Http1 {
            return Writing::Other;
        }
        let Some(status) = response_status(buf) else {
            return Writing::Other;
        };
        if self.activity.started() > self.answered {
            // An interim 100 Continue is not the answer.
            return match status >= 200 {
                true => Writing::Answer,
                false => Writing::Other,
            };
        }
        let head = &buf[..buf.len().min(256)];
        let empty = head
            .windows(EMPTY_BODY.len())
            .any(|w| w.eq_ignore_ascii_case(EMPTY_BODY));
        let next_request = self.unanswered_bytes || self.pipelined;
        match next_request && self.body_left == 0 && REFUSALS.contains(&status) && empty {
            true => Writing::Refusal(status),
            false => Writing::Other,
        }
    }

    /// Counts a served request's answer once its first bytes are taken (hyper writes the same
    /// bytes again after a `Pending`).
    /// `head` is the first piece written.
    fn written(&mut self, writing: Writing, head: &[u8], result: &Poll<io::Result<usize>>) {
        let Poll::Ready(Ok(written)) = *result else {
            return;
        };
        if writing == Writing::Answer && written > 0 {
            self.answered += 1;
            self.unanswered_bytes = false;
            self.pipelined = self.holds_next_request();
            let bodiless = matches!(response_status(head), Some(100..=199 | 204 | 304))
                || self
                    .received
                    .as_ref()
                    .is_some_and(|r| r.lock().bodiless_answer);
            self.body_left = match body_length(head) {
                Some((head, body)) if !bodiless => {
                    body.saturating_sub(written.saturating_sub(head) as u64)
                }
                _ => 0,
            };
        } else {
            self.body_left = self.body_left.saturating_sub(written as u64);
        }
    }

    fn refuse(&mut self, status: u16, reason: String) {
        let received = match &self.received {
            Some(received) if self.holds_next_request() => received.take(),
            _ => Vec::new(),
        };
        tracing::debug!("refused a request with {status}: {reason}");
        self.answer = Some((answer(self.speaker, status, &reason), 0));
        self.slot.put(Refused {
            status,
            reason,
            received,
        });
    }
}

/// Why a head got 408: it took longer than `timeout`, which `flag` sets (the relay's has no
/// flag).
pub fn late_head_reason(timeout: Duration, flag: Option<&str>) -> String {
    let set_by = flag.map(|flag| format!(", {flag}")).unwrap_or_default();
    format!(
        "the request line and headers did not all arrive within {} s (the header \
         timeout{set_by})",
        timeout.as_secs_f64()
    )
}

/// What a refusal's body says.
pub fn reason(status: u16) -> &'static str {
    match status {
        400 => {
            "the request is not valid HTTP/1.1: its request line or a header could not be \
             parsed"
        }
        414 => "the request target (path and query) is too long",
        431 => "the request's headers are over the limit (256 KiB, or 100 headers)",
        _ => "the request could not be read",
    }
}

/// What the sender is told, after the speaker's name.
fn told(reason: &str) -> String {
    format!("{reason}; it was not forwarded")
}

fn answer(speaker: &str, status: u16, reason: &str) -> Vec<u8> {
    let phrase = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Error");
    let body = format!("{speaker}: {}\n", told(reason));
    format!(
        "HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What a write holds, for [`Refusals`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writing {
    /// The head of a served request's final response.
    Answer,
    /// hyper refusing a request with this status.
    Refusal(u16),
    /// Anything else: the rest of a response, an interim one, HTTP/2 frames.
    Other,
}

/// A response head's length and the body length it declares; `u64::MAX` for a body that
/// ends when the connection closes, `None` for a chunked one (its pieces start with their
/// size, never like a response head) or a head not all in `head`.
fn body_length(head: &[u8]) -> Option<(usize, u64)> {
    let end = memchr::memmem::find(head, b"\r\n\r\n")?;
    let mut length = u64::MAX;
    for line in head[..end].split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
        }
    }
    Some((end + 4, length))
}

/// The status of a response head (`HTTP/1.x NNN …`).
fn response_status(buf: &[u8]) -> Option<u16> {
    let status = buf.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(status).ok()?.parse().ok()
}

impl<IO: AsyncWrite + Unpin> Refusals<IO> {
    /// Writes what is left of our answer; ready once it is all written.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.answer {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO> Refusals<IO> {
    /// Whether the head being received is late, with its deadline armed (and this task
    /// woken at it) while it is not.
    fn head_late(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((timeout, _)) = self.head_timeout else {
            return false;
        };
        if self.protocol != Protocol::Http1
            || self.answer.is_some()
            || self.activity.in_flight() > 0
            || !self.holds_a_head_start()
        {
            return false;
        }
        let started = self.activity.started();
        let timer = match &mut self.head_timer {
            Some((armed_for, timer)) if *armed_for == started => timer,
            _ => {
                self.activity.head_begun();
                let deadline = self.activity.head_deadline(timeout);
                &mut self
                    .head_timer
                    .insert((started, Box::pin(tokio::time::sleep_until(deadline))))
                    .1
            }
        };
        timer.as_mut().poll(cx).is_ready()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Refusals<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ended_reading {
            let before = buf.filled().len();
            match Pin::new(&mut self.io).poll_read(cx, buf) {
                Poll::Ready(read) => {
                    read?;
                    if self.protocol != Protocol::Http2 {
                        let this = &mut *self;
                        this.keep(&buf.filled()[before..]);
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending if !self.head_late(cx) => return Poll::Pending,
                Poll::Pending => {
                    let (timeout, flag) = self.head_timeout.unwrap_or_default();
                    self.refuse(LATE_HEAD, late_head_reason(timeout, flag));
                    self.ended_reading = true;
                }
            }
        }
        // Our 408 goes out whole before hyper reads the end of the stream (and gives up on
        // the head without an answer of its own).
        ready!(self.poll_answer(cx))?;
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Refusals<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.answer.is_none() {
            match self.classify(buf) {
                Writing::Refusal(status) => self.refuse(status, reason(status).to_string()),
                writing => {
                    let result = Pin::new(&mut self.io).poll_write(cx, buf);
                    self.written(writing, buf, &result);
                    return result;
                }
            }
        }
        // Ours replaces hyper's answer; hyper closes the connection after it.
        ready!(self.poll_answer(cx))?;
        Poll::Ready(Ok(buf.len()))
    }

    /// Passed through (hyper then queues a response's head and body as one `writev`), with
    /// the same watch on what is written as [`AsyncWrite::poll_write`].
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.answer.is_none() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            match self.classify(first) {
                Writing::Refusal(status) => self.refuse(status, reason(status).to_string()),
                writing => {
                    let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
                    self.written(writing, first, &result);
                    return result;
                }
            }
        }
        ready!(self.poll_answer(cx))?;
        Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_answer(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_answer(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Records a request hyper refused before it reached [`crate::pipeline::handle`]:
/// what was received, as far as it reads as a request line and headers, and all of it as the
/// body; the status the sender got and hyper's reason.
pub async fn record_refused(
    proxy: &Proxy,
    connection: &ConnectionInfo,
    refused: Refused,
    reason: &str,
) {
    let received = Bytes::from(refused.received);
    let head = RoughHead::of(&received);
    let target = head.target.unwrap_or_else(|| "/".into());
    let public_url = proxy.public_url_of(None, head.host.as_deref(), &target);
    let request = RequestRecord {
        method: head.method.unwrap_or_else(|| "-".into()),
        target,
        http_version: "HTTP/1.1".into(),
        host: head.host,
        public_url,
        headers: head.headers,
        body: received,
        body_truncated: false,
        client_addr: connection.client_addr.map(|a| a.to_string()),
        tls: connection.tls.clone(),
    };
    let mut verdict = Verdict::bare(VerdictStatus::Unsigned);
    verdict.explanation =
        vec!["Not checked: the request was refused before it could be read.".into()];
    // Its Event and CallUUID are read from what followed the head, as a reader is shown.
    let mut exchange = Exchange::received(request.after_the_head(), verdict, now_micros());
    exchange.request.body = request.body;
    // The record's answer is the one the sender got (ours, in place of hyper's).
    exchange.failed_answering(
        Outcome::ClientError,
        refused.status,
        format!(
            "refused before forwarding: {reason} (the body holds what was received, as it came)"
        ),
        told(&refused.reason),
    );
    exchange.done();
    proxy.record_answered(exchange).await;
}

/// A refused request read leniently: the request line's method and target when they look
/// like ones, and the lines with a colon as headers (names as sent).
struct RoughHead {
    method: Option<String>,
    target: Option<String>,
    host: Option<String>,
    headers: Headers,
}

impl RoughHead {
    fn of(received: &[u8]) -> RoughHead {
        let head = received
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(received, |end| &received[..end]);
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
        let mut words = first.split(' ');
        let method = words
            .next()
            .filter(|m| !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase()))
            .map(String::from);
        let target = words
            .next()
            .filter(|t| t.starts_with('/') || t.contains("://"))
            .map(|t| t.chars().take(2048).collect());
        let headers: Vec<(String, Vec<u8>)> = lines
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
                let value = line[colon + 1..].trim_ascii().to_vec();
                (!name.is_empty()).then_some((name, value))
            })
            .collect();
        let host = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .filter(|host| crate::config::plausible_host(host))
            .map(String::from);
        RoughHead {
            method,
            target,
            host,
            headers: Headers(headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn hyper_s_empty_refusal_becomes_ours_and_the_request_is_kept() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let activity = Activity::new();
        let slot = Arc::new(RefusalSlot::default());
        let mut stream = Refusals::new(
            ours,
            activity.clone(),
            slot.clone(),
            Some(Arc::default()),
            "vobiz-tunnel",
        );
        theirs
            .write_all(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            .await
            .unwrap();
        let mut read = [0u8; 1024];
        let n = stream.read(&mut read).await.unwrap();
        assert_eq!(n, 30);
        stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            )
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = String::new();
        theirs.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(answer.ends_with(
            "vobiz-tunnel: the request is not valid HTTP/1.1: its request line or a header \
             could not be parsed; it was not forwarded\n"
        ));
        let refused = slot.take().unwrap();
        assert_eq!(refused.status, 400);
        assert_eq!(refused.received, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    }

    #[tokio::test]
    async fn responses_to_served_requests_pass_untouched() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let activity = Activity::new();
        let slot = Arc::new(RefusalSlot::default());
        let mut stream = Refusals::new(
            ours,
            activity.clone(),
            slot.clone(),
            Some(Arc::default()),
            "vobiz-tunnel",
        );
        theirs
            .write_all(b"POST /cb HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut read = [0u8; 1024];
        let _ = stream.read(&mut read).await.unwrap();
        // The request's future ends before hyper writes its answer.
        drop(activity.begin());
        let response = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        stream.write_all(response).await.unwrap();
        stream.flush().await.unwrap();
        drop(stream);
        let mut answer = Vec::new();
        theirs.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, response);
        assert_eq!(slot.take(), None);
    }

    /// A sink that is not ready the first time each write is offered.
    #[derive(Default)]
    struct Hesitant {
        out: Vec<u8>,
        ready: bool,
    }

    impl AsyncWrite for Hesitant {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let ready = self.ready;
            self.ready = !ready;
            if !ready {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.out.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn an_answer_offered_twice_counts_once() {
        let activity = Activity::new();
        let mut stream = Refusals::new(
            Hesitant::default(),
            activity.clone(),
            Arc::default(),
            None,
            "vobiz-tunnel",
        );
        // Two served requests, each answered by the local server with an empty 400.
        let empty_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        for _ in 0..2 {
            stream.keep(b"POST /cb HTTP/1.1\r\n\r\n");
            drop(activity.begin());
            stream.write_all(empty_400).await.unwrap();
        }
        assert!(stream.answer.is_none(), "neither taken for a refusal");
        assert_eq!(stream.io.out, [&empty_400[..], &empty_400[..]].concat());
    }

    /// A response body whose own bytes look like a refusal (an HTTP transcript the local
    /// server returns), written as a piece of its own: it is the body, not a refusal.
    #[tokio::test]
    async fn a_body_that_looks_like_a_refusal_is_still_the_body() {
        let activity = Activity::new();
        let mut stream = Refusals::new(Vec::new(), activity.clone(), Arc::default(), None, "x");
        stream.keep(b"POST /cb HTTP/1.1\r\n\r\n");
        drop(activity.begin());
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 47\r\n\r\n";
        let body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        stream.write_all(head).await.unwrap();
        stream.write_all(body).await.unwrap();
        assert!(stream.answer.is_none());
        assert_eq!(stream.io, [&head[..], &body[..]].concat());
    }

    /// A stream over a `Vec` watched as the listener watches a connection: with its activity,
    /// where a refusal goes, and the request starts it keeps.
    fn watched() -> (
        Refusals<Vec<u8>>,
        Arc<Activity>,
        Arc<RefusalSlot>,
        Arc<RequestStart>,
    ) {
        let activity = Activity::new();
        let slot = Arc::new(RefusalSlot::default());
        let start = Arc::new(RequestStart::default());
        let stream = Refusals::new(
            Vec::new(),
            activity.clone(),
            slot.clone(),
            Some(start.clone()),
            "vobiz-tunnel",
        );
        (stream, activity, slot, start)
    }

    /// Two requests in one piece: the service takes the first; hyper refuses the second after
    /// answering the first, whose body (written on its own) looks like a refusal too.
    #[tokio::test]
    async fn a_refusal_of_a_request_pipelined_behind_a_served_one_is_explained() {
        let (mut stream, activity, slot, start) = watched();
        let served = b"POST /one HTTP/1.1\r\ncontent-length: 3\r\n\r\na=1";
        let malformed = b"GET / HTTP/1.1\r\nBad Header\r\n\r\n";
        stream.keep(&[&served[..], &malformed[..]].concat());
        let request = hyper::Request::post("/one")
            .header("content-length", "3")
            .body(())
            .unwrap();
        let headers = start.take_for(&request).expect("its head");
        assert_eq!(headers.0, [("content-length".to_string(), b"3".to_vec())]);
        assert_eq!(start.lock().bytes, malformed, "kept for the next request");
        drop(activity.begin());
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 47\r\n\r\n";
        let body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        stream.write_all(head).await.unwrap();
        stream.write_all(body).await.unwrap();
        assert!(stream.answer.is_none(), "the body is the body");
        assert_eq!(slot.take(), None);
        stream.write_all(body).await.unwrap();
        let refused = slot
            .take()
            .expect("hyper's refusal of the pipelined request");
        assert_eq!(refused.status, 400);
        assert_eq!(refused.received, malformed);
        assert!(stream.io.ends_with(b"; it was not forwarded\n"));
    }

    /// A chunked request's end is counted from its chunks, whether the malformed request
    /// behind it comes in the same piece or after the rest of the chunks.
    #[tokio::test]
    async fn a_refusal_pipelined_behind_a_chunked_request_is_explained() {
        let head = b"POST /one HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
        let malformed = b"GET / HTTP/1.1\r\nBad Header\r\n\r\n";
        let chunks: &[&[u8]] = &[b"3\r\na=1", b"\r\n4\r\n&b=2\r\n0\r\n", b"\r\n"];
        for split in 0..=chunks.len() {
            let (mut stream, activity, slot, start) = watched();
            // The head and the first `split` pieces arrive before the request is taken.
            let first: Vec<u8> = [&head[..]]
                .into_iter()
                .chain(chunks[..split].iter().copied())
                .collect::<Vec<_>>()
                .concat();
            let rest = [chunks[split..].concat(), malformed.to_vec()].concat();
            stream.keep(&first);
            let request = hyper::Request::post("/one")
                .header("transfer-encoding", "chunked")
                .body(())
                .unwrap();
            assert!(start.take_for(&request).is_some());
            let serving = activity.begin();
            stream.keep(&rest);
            drop(serving);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            let refused = slot.take().map(|r| r.received);
            assert_eq!(refused.as_deref(), Some(&malformed[..]), "split at {split}");
        }
    }

    /// Answers without a body (to a HEAD, a 204) whose head declares one: what hyper writes
    /// next is not that body, and a refusal is still taken for one.
    #[tokio::test]
    async fn a_refusal_after_a_bodiless_answer_is_still_explained() {
        for (method, head) in [
            ("HEAD", &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..]),
            (
                "GET",
                &b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"[..],
            ),
        ] {
            let (mut stream, activity, slot, start) = watched();
            stream.keep(format!("{method} / HTTP/1.1\r\n\r\n").as_bytes());
            let request = hyper::Request::builder()
                .method(method)
                .uri("/")
                .body(())
                .unwrap();
            start.take_for(&request);
            drop(activity.begin());
            stream.write_all(head).await.unwrap();
            stream.keep(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
            stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(slot.take().map(|r| r.status), Some(400), "after {method}");
        }
    }

    /// What a client sends decides, not what its ALPN said: one that negotiated `h2` and
    /// speaks HTTP/1 is served HTTP/1 by hyper, and watched like any.
    #[tokio::test]
    async fn http1_after_an_h2_alpn_is_watched_and_a_short_preface_is_not() {
        let slot = Arc::new(RefusalSlot::default());
        let mut stream = Refusals::new(
            Vec::new(),
            Activity::new(),
            slot.clone(),
            Some(Arc::default()),
            "x",
        )
        .speaking_h2(true);
        stream.keep(b"POST / HTTP/1.1\r\nBad Header\r\n\r\n");
        stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(slot.take().map(|r| r.status), Some(400));
        for (alpn_h2, first, protocol) in [
            (true, &b"PRI * HT"[..], Protocol::Http2),
            (
                false,
                &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
                Protocol::Http2,
            ),
            (false, &b"PRI * HT"[..], Protocol::Http1),
        ] {
            let mut stream =
                Refusals::new((), Activity::new(), Arc::default(), None, "x").speaking_h2(alpn_h2);
            stream.keep(first);
            assert_eq!(stream.protocol, protocol, "{alpn_h2} {first:?}");
        }
    }

    /// The malformed request arrives in a piece of its own while the first is served, after
    /// the rest of the first one's body.
    #[tokio::test]
    async fn a_request_pipelined_in_a_later_piece_is_told_from_the_body_before_it() {
        let (mut stream, activity, slot, start) = watched();
        stream.keep(b"POST /one HTTP/1.1\r\ncontent-length: 6\r\n\r\na=");
        let request = hyper::Request::post("/one")
            .header("content-length", "6")
            .body(())
            .unwrap();
        start.take_for(&request);
        let serving = activity.begin();
        let malformed = b"GET / HTTP/1.1\r\nBad Header\r\n\r\n";
        stream.keep(b"1&");
        stream.keep(&[&b"b="[..], &malformed[..]].concat());
        drop(serving);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let refused = slot
            .take()
            .expect("hyper's refusal of the pipelined request");
        assert_eq!(refused.received, malformed);
    }

    /// More than the room before the request was taken: its end cannot be counted from what
    /// was kept, so nothing read later is taken for a pipelined request.
    #[test]
    fn a_request_cut_short_by_the_room_has_no_known_end() {
        let start = Arc::new(RequestStart::default());
        let mut stream = Refusals::new(
            (),
            Activity::new(),
            Arc::default(),
            Some(start.clone()),
            "x",
        );
        let head = b"POST /big HTTP/1.1\r\ncontent-length: 40000\r\n\r\n";
        stream.keep(&[&head[..], &[b'a'; 20_000][..]].concat());
        let request = hyper::Request::post("/big")
            .header("content-length", "40000")
            .body(())
            .unwrap();
        assert!(
            start.take_for(&request).is_some(),
            "the head itself was kept"
        );
        assert_eq!(start.lock().to_come, BodyLeft::Unknown);
    }

    #[test]
    fn a_request_ends_after_its_declared_body_or_its_last_chunk() {
        let request = |headers: &[(&str, &str)]| {
            let mut builder = hyper::Request::post("/");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap()
        };
        let request_end = |bytes: &[u8], request: &hyper::Request<()>| {
            let (head, _) = parse_head(bytes, request)?;
            let mut body = body_of(request);
            let counted = body.count_off(&bytes[head..]);
            body.ended().then_some(head + counted)
        };
        let end = |headers: &[(&str, &str)]| {
            let lines: String = headers
                .iter()
                .map(|(n, v)| format!("{n}: {v}\r\n"))
                .collect();
            let head = format!("POST / HTTP/1.1\r\n{lines}\r\n");
            let bytes = format!("{head}abcNEXT");
            request_end(bytes.as_bytes(), &request(headers)).map(|end| end - head.len())
        };
        assert_eq!(end(&[]), Some(0));
        assert_eq!(end(&[("content-length", "3")]), Some(3));
        assert_eq!(
            end(&[("transfer-encoding", "chunked")]),
            None,
            "abc… is no chunk"
        );
        let chunked = [("transfer-encoding", "gzip, chunked")];
        let head = "POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
        let bytes = format!("{head}2\r\nab\r\n0\r\n\r\nNEXT");
        assert_eq!(
            request_end(bytes.as_bytes(), &request(&chunked)),
            Some(bytes.len() - 4)
        );
        let not_chunked = [("transfer-encoding", "chunked, gzip")];
        let head = "POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n";
        let bytes = format!("{head}2\r\nab\r\n0\r\n\r\nNEXT");
        assert_eq!(request_end(bytes.as_bytes(), &request(&not_chunked)), None);
        assert_eq!(request_end(b"POST / HTTP/1.1\r\n", &request(&[])), None);
        // As hyper reads it: blank lines first, bare line feeds.
        let loose = b"\r\n\nPOST / HTTP/1.1\nHost: x\n\nNEXT";
        let host = request(&[("host", "x")]);
        assert_eq!(request_end(loose, &host), Some(loose.len() - 4));
        // Bytes of another request are not split, nor a head with other headers.
        assert_eq!(
            request_end(b"GET /other HTTP/1.1\r\n\r\n", &request(&[])),
            None
        );
        assert_eq!(request_end(loose, &request(&[])), None);
        let other_value = request(&[("host", "y")]);
        assert_eq!(request_end(loose, &other_value), None, "values count too");
        // The headers as written: case and order.
        let written = parse_head(b"POST / HTTP/1.1\r\nX-B: 1\r\nx-a: 2\r\n\r\n", &{
            request(&[("x-b", "1"), ("x-a", "2")])
        });
        let names: Vec<_> = written
            .iter()
            .flat_map(|(_, h)| &h.0)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["X-B", "x-a"]);
        assert_eq!(
            body_length(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Some((38, 5))
        );
        assert_eq!(
            body_length(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            None
        );
        assert_eq!(
            body_length(b"HTTP/1.0 200 OK\r\n\r\n"),
            Some((19, u64::MAX))
        );
    }

    #[test]
    fn only_the_start_of_a_request_is_kept_and_a_served_one_is_forgotten() {
        let activity = Activity::new();
        let slot = Arc::new(RefusalSlot::default());
        let start = Arc::new(RequestStart::default());
        let mut stream = Refusals::new((), activity.clone(), slot, Some(start.clone()), "x");
        stream.keep(b"POST /one HTTP/1.1\r\n\r\n");
        assert_eq!(
            start.take(),
            b"POST /one HTTP/1.1\r\n\r\n",
            "the service takes it"
        );
        stream.keep(b"POST /two HTTP/1.1\r\n\r\n");
        drop(activity.begin());
        stream.keep(&vec![b'a'; KEPT_BYTES * 2]);
        let kept = start.take();
        assert_eq!(kept.len(), KEPT_BYTES);
        assert!(kept.iter().all(|&b| b == b'a'));
        let h2_start = Arc::new(RequestStart::default());
        let mut h2 = Refusals::new(
            (),
            Activity::new(),
            Arc::default(),
            Some(h2_start.clone()),
            "x",
        );
        h2.keep(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(h2_start.take().is_empty());
        assert_eq!(
            h2.classify(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            Writing::Other
        );
    }
}
