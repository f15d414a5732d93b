//! Writing HAR 1.2 (<http://www.softwareishard.com/blog/har-12-spec/>), the format browser
//! dev tools and Insomnia open. [`HarWriter`] streams: the `log` header first, then one entry
//! per exchange as it is read from the store, so the export's memory does not grow with the
//! number of exchanges.
//!
//! Everything HAR has no field for (the verdict, raw timings, non-UTF-8 bytes) goes into the
//! `_vobizTunnel` object of each entry and `_base64` fields of header objects (HAR reserves
//! `_`-prefixed names for tools), so that `import` gets back exactly what was recorded.

use std::io::{self, Write};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::iso;
use crate::exchange::{Exchange, Headers, Timings};

/// Streams a HAR document to `out`: [`HarWriter::new`], [`HarWriter::write`] per exchange,
/// then [`HarWriter::finish`]. One compact entry per line keeps big exports diffable.
pub struct HarWriter<W: Write> {
    out: W,
    entries: u64,
}

impl<W: Write> HarWriter<W> {
    /// Writes the `log` header (version, creator) and opens `entries`.
    pub fn new(mut out: W) -> io::Result<Self> {
        let creator = json!({"name": "vobiz-tunnel", "version": env!("CARGO_PKG_VERSION")});
        write!(
            out,
            "{{\"log\":{{\"version\":\"1.2\",\"creator\":{creator},\"entries\":["
        )?;
        Ok(HarWriter { out, entries: 0 })
    }

    /// Appends one exchange as an entry.
    pub fn write(&mut self, exchange: &Exchange) -> io::Result<()> {
        let separator = if self.entries == 0 { "\n" } else { ",\n" };
        self.out.write_all(separator.as_bytes())?;
        serde_json::to_writer(&mut self.out, &entry(exchange))?;
        self.entries += 1;
        Ok(())
    }

    /// Closes the document and returns the writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"\n]}}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One HAR entry for `exchange`.
pub fn entry(exchange: &Exchange) -> Value {
    let request = &exchange.request;
    let (send, wait, receive) = phases(&exchange.timings);
    let mut vobiz = json!({
        "id": exchange.id,
        "replay_of": exchange.replay_of,
        "sent_to": exchange.sent_to,
        "nonce_reused_of": exchange.nonce_reused_of,
        "event": exchange.event,
        "call_uuid": exchange.call_uuid,
        "outcome": exchange.outcome,
        "error": exchange.error,
        "flags": exchange.flags,
        "findings": exchange.findings,
        "signature": exchange.verdict,
        "client_addr": request.client_addr,
        "tls": request.tls,
        "target": request.target,
        "host": request.host,
        "http_version": request.http_version,
        "body_truncated": request.body_truncated,
        "timings": exchange.timings,
    });
    if std::str::from_utf8(&request.body).is_err() {
        vobiz["request_body_base64"] = BASE64.encode(&request.body).into();
    }
    let mut har_request = json!({
        "method": request.method,
        "url": request.public_url,
        "httpVersion": or_default(&request.http_version),
        "cookies": [],
        "headers": headers(&request.headers),
        "queryString": query_string(&request.target),
        "headersSize": -1,
        "bodySize": request.body.len(),
    });
    if !request.body.is_empty() {
        let mime = request
            .headers
            .get_str("content-type")
            .unwrap_or("application/octet-stream");
        let mut post = json!({"mimeType": mime, "text": String::from_utf8_lossy(&request.body)});
        if request.is_form_post() {
            post["params"] = pairs(&exchange.form_fields());
        }
        har_request["postData"] = post;
    }
    json!({
        "startedDateTime": iso::format_micros(exchange.timings.received_us),
        "time": send + wait + receive,
        "request": har_request,
        "response": response(exchange),
        "cache": {},
        "timings": {
            "blocked": -1, "dns": -1, "connect": -1, "ssl": -1,
            "send": send, "wait": wait, "receive": receive,
        },
        "_vobizTunnel": vobiz,
    })
}

/// The response object; status 0 and empty content when there was none (as browsers write
/// a request that got no answer).
fn response(exchange: &Exchange) -> Value {
    let Some(response) = &exchange.response else {
        return json!({
            "status": 0, "statusText": "", "httpVersion": "", "cookies": [], "headers": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "", "headersSize": -1, "bodySize": -1,
        });
    };
    let mut content = Map::new();
    content.insert("size".into(), response.body.len().into());
    let mime = response
        .headers
        .get_str("content-type")
        .unwrap_or("x-unknown");
    content.insert("mimeType".into(), mime.into());
    match std::str::from_utf8(&response.body) {
        Ok(text) => {
            content.insert("text".into(), text.into());
        }
        Err(_) => {
            content.insert("text".into(), BASE64.encode(&response.body).into());
            content.insert("encoding".into(), "base64".into());
        }
    }
    let status_text = hyper::StatusCode::from_u16(response.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    json!({
        "status": response.status,
        "statusText": status_text,
        // The response's version is not recorded; the local server answered on the same one
        // as far as the sender could tell.
        "httpVersion": or_default(&exchange.request.http_version),
        "cookies": [],
        "headers": headers(&response.headers),
        "content": content,
        "redirectURL": response.headers.get_str("location").unwrap_or(""),
        "headersSize": -1,
        "bodySize": response.body.len(),
    })
}

fn or_default(version: &str) -> &str {
    if version.is_empty() {
        "HTTP/1.1"
    } else {
        version
    }
}

/// `[{name, value}]` in received order; a value that is not UTF-8 also carries its exact
/// bytes in `_base64`.
fn headers(headers: &Headers) -> Value {
    let list = headers.0.iter().map(|(name, value)| {
        let mut object = json!({"name": name, "value": String::from_utf8_lossy(value)});
        if std::str::from_utf8(value).is_err() {
            object["_base64"] = BASE64.encode(value).into();
        }
        object
    });
    Value::Array(list.collect())
}

fn pairs(pairs: &[(String, String)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect(),
    )
}

fn query_string(target: &str) -> Value {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    // Decoding into strings is lossy and never fails, so a strange query still lists fields.
    let decoded: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    pairs(&decoded)
}

/// HAR's send / wait / receive in milliseconds, from the recorded instants: send until the
/// request went upstream, wait until the first response byte, receive until the end. A
/// missing instant makes its phase 0 (HAR forbids -1 for these three).
pub fn phases(timings: &Timings) -> (f64, f64, f64) {
    let mut last = timings.received_us;
    let mut phase = |end: Option<i64>| {
        let Some(end) = end else { return 0.0 };
        let ms = end.saturating_sub(last).max(0) as f64 / 1000.0;
        last = last.max(end);
        ms
    };
    let send = phase(
        timings
            .forwarded_us
            .or(timings.first_byte_us)
            .or(timings.done_us),
    );
    let wait = phase(timings.first_byte_us.or(timings.done_us));
    let receive = phase(timings.done_us);
    (send, wait, receive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_to_the_duration() {
        let timings = Timings {
            received_us: 1_000,
            forwarded_us: Some(3_000),
            first_byte_us: Some(10_000),
            done_us: Some(12_500),
        };
        assert_eq!(phases(&timings), (2.0, 7.0, 2.5));
        let (s, w, r) = phases(&timings);
        assert_eq!(Some(s + w + r), timings.duration_ms());
        let refused = Timings {
            received_us: 1_000,
            forwarded_us: Some(1_500),
            first_byte_us: None,
            done_us: Some(4_000),
        };
        assert_eq!(phases(&refused), (0.5, 2.5, 0.0));
        let pending = Timings {
            received_us: 1_000,
            ..Timings::default()
        };
        assert_eq!(phases(&pending), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_writer_produces_one_json_document() {
        let mut writer = HarWriter::new(Vec::new()).unwrap();
        let exchange = crate::export::tests::sample();
        writer.write(&exchange).unwrap();
        writer.write(&exchange).unwrap();
        let bytes = writer.finish().unwrap();
        let har: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(har["log"]["version"], "1.2");
        assert_eq!(har["log"]["entries"].as_array().map(Vec::len), Some(2));
        let empty: Value =
            serde_json::from_slice(&HarWriter::new(Vec::new()).unwrap().finish().unwrap()).unwrap();
        assert_eq!(empty["log"]["entries"], json!([]));
    }
}
