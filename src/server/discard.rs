//! What an HTTP/2 sender still sends after it was answered without its body being read (413,
//! 403, 404 and the like): read on and thrown away, in the background.
//!
//! Dropping the body of an HTTP/2 stream the sender is still writing resets the stream
//! (`RST_STREAM CANCEL`), and clients such as curl then report a framing error instead of the
//! answer they were sent. Reading the rest lets the stream end cleanly. It is bounded in time,
//! and nothing is kept. HTTP/1 needs none of this: hyper closes the connection after the
//! answer instead, and [`super::linger`] reads what still comes.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::Version;

/// How long the rest of a refused body is read before the stream is reset after all.
const DISCARD_FOR: Duration = Duration::from_secs(10);

/// Reads and discards the rest of `body` in the background, for HTTP/2 only.
pub(crate) fn discard_rest(mut body: Incoming, version: Version) {
    if version != Version::HTTP_2 || body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DISCARD_FOR, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    });
}
