//! Reading HAR into exchanges: our own exports (lossless, through `_vobizTunnel` and the
//! `_base64` fields) and files saved by browsers or Insomnia (missing optional fields are
//! tolerated; the signature is checked without tokens, which says unsigned or unchecked).
//!
//! The whole file is converted before anything is stored, so a malformed entry is reported
//! (with its index in `log.entries`) without having imported the entries before it. It is
//! read as a stream, each entry converted as soon as it is read: memory holds the exchanges,
//! never the file's whole JSON tree (a 67 MB file: 116 MB resident instead of 393 MB).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::iso;
use crate::exchange::{
    Exchange, Flag, Headers, Outcome, RequestRecord, ResponseRecord, Timings, TlsInfo,
};
use crate::signature::{verify_record, Keys, Verdict};

type Object = Map<String, Value>;

/// Converts a HAR document into exchanges, flagged [`Flag::Imported`]. Errors name the entry:
/// `entry 3: request.url is not a URL ("x")`, where 3 is the index in `log.entries`.
///
/// An entry of our own export keeps its `id` and `replay_of` as they were in the store it
/// came from; those name nothing in another store, so [`store_all`](super::store_all)
/// renumbers them on insert. Entries of other tools have neither.
pub fn parse_har(bytes: &[u8]) -> Result<Vec<Exchange>, String> {
    read_har(&mut serde_json::Deserializer::from_slice(bytes), || {
        serde_json::from_slice::<IgnoredAny>(bytes).err()
    })
}

/// [`parse_har`] on a file, read as a stream: entries are converted one at a time as they
/// are read, so a large file is never held whole as a JSON tree, only as the exchanges it
/// makes.
pub fn parse_har_file(path: &std::path::Path) -> Result<Vec<Exchange>, String> {
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| format!("cannot read it: {e}"))
    };
    read_har(&mut serde_json::Deserializer::from_reader(open()?), || {
        open()
            .ok()
            .and_then(|file| serde_json::from_reader::<_, IgnoredAny>(file).err())
    })
}

/// Reads the entries from `input`. `syntax_error` checks the whole input as JSON, for an
/// input that is not shaped like HAR: a cut-off file is "not JSON" rather than "not HAR",
/// though the stream stopped at the first thing out of shape.
fn read_har<'de, R: serde_json::de::Read<'de>>(
    input: &mut serde_json::Deserializer<R>,
    syntax_error: impl FnOnce() -> Option<serde_json::Error>,
) -> Result<Vec<Exchange>, String> {
    let entry_error = std::cell::RefCell::new(None);
    let read = serde::de::DeserializeSeed::deserialize(
        walk::Document {
            entry_error: &entry_error,
        },
        &mut *input,
    )
    .and_then(|exchanges| input.end().map(|()| exchanges));
    let error = match read {
        Ok(exchanges) => return Ok(exchanges),
        Err(error) => error,
    };
    if let Some(entry) = entry_error.into_inner() {
        return Err(entry);
    }
    let error = match error.classify() {
        serde_json::error::Category::Data => match syntax_error() {
            Some(syntax) => syntax,
            None => return Err("not a HAR file: there is no log.entries array".into()),
        },
        _ => error,
    };
    Err(format!("not JSON ({error})"))
}

/// The way down to `log.entries`, converting each entry as soon as it is read.
mod walk {
    use std::cell::RefCell;
    use std::fmt;

    use serde::de::{DeserializeSeed, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;

    use crate::exchange::Exchange;

    /// The whole document; `entry_error` receives an entry's own error (`entry 3: …`).
    pub struct Document<'a> {
        pub entry_error: &'a RefCell<Option<String>>,
    }

    /// `log`, then `entries`, each an object whose other keys are skipped.
    struct Field<'a> {
        key: &'static str,
        inner: Option<&'static str>,
        entry_error: &'a RefCell<Option<String>>,
    }

    struct Entries<'a> {
        entry_error: &'a RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Document<'_> {
        type Value = Vec<Exchange>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(Field {
                key: "log",
                inner: Some("entries"),
                entry_error: self.entry_error,
            })
        }
    }

    impl<'de> Visitor<'de> for Field<'_> {
        type Value = Vec<Exchange>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an object with `{}`", self.key)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<String>()? {
                if key != self.key || found.is_some() {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                found = Some(match self.inner {
                    Some(inner) => map.next_value_seed(Inner(Field {
                        key: inner,
                        inner: None,
                        entry_error: self.entry_error,
                    }))?,
                    None => map.next_value_seed(Entries {
                        entry_error: self.entry_error,
                    })?,
                });
            }
            found.ok_or_else(|| A::Error::missing_field(self.key))
        }
    }

    /// A nested [`Field`] as a seed.
    struct Inner<'a>(Field<'a>);

    impl<'de> DeserializeSeed<'de> for Inner<'_> {
        type Value = Vec<Exchange>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self.0)
        }
    }

    impl<'de> DeserializeSeed<'de> for Entries<'_> {
        type Value = Vec<Exchange>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Entries<'_> {
        type Value = Vec<Exchange>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut exchanges = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(entry) = seq.next_element::<Value>()? {
                match super::parse_entry(&entry) {
                    Ok(exchange) => exchanges.push(exchange),
                    Err(e) => {
                        let message = format!("entry {}: {e}", exchanges.len());
                        *self.entry_error.borrow_mut() = Some(message.clone());
                        return Err(A::Error::custom(message));
                    }
                }
            }
            Ok(exchanges)
        }
    }
}

fn parse_entry(entry: &Value) -> Result<Exchange, String> {
    let entry = entry.as_object().ok_or("is not an object")?;
    let request = object(entry, "request", "request")?.ok_or("request is missing")?;
    // Our own export: the facts HAR has no field for.
    let ours = object(entry, "_vobizTunnel", "_vobizTunnel")?;
    let field = |key: &str| ours.and_then(|o| o.get(key)).filter(|v| !v.is_null());
    let text = |key: &str| -> Result<Option<String>, String> {
        field(key)
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or(format!("_vobizTunnel.{key} is not a string"))
            })
            .transpose()
    };
    let id = |key: &str| -> Result<Option<i64>, String> {
        field(key)
            .map(|v| {
                v.as_i64()
                    .ok_or(format!("_vobizTunnel.{key} is not an exchange id"))
            })
            .transpose()
    };

    let method = string(request, "method", "request.method")?.ok_or("request.method is missing")?;
    if hyper::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(format!("request.method is not an HTTP method ({method:?})"));
    }
    let url = string(request, "url", "request.url")?.ok_or("request.url is missing")?;
    let uri: hyper::Uri = url
        .parse()
        .ok()
        .filter(|u: &hyper::Uri| u.scheme().is_some() && u.authority().is_some())
        .ok_or(format!("request.url is not a URL ({url:?})"))?;
    let target = match text("target")? {
        Some(target) => target,
        None => uri
            .path_and_query()
            .map_or("/".into(), |pq| pq.as_str().into()),
    };
    let host = match ours {
        Some(_) => text("host")?,
        None => uri.authority().map(|a| a.as_str().to_string()),
    };
    let http_version = match text("http_version")? {
        Some(version) => version,
        None => string(request, "httpVersion", "request.httpVersion")?
            .filter(|v| !v.is_empty())
            .unwrap_or("HTTP/1.1")
            .to_string(),
    };
    let body = match text("request_body_base64")? {
        Some(encoded) => BASE64
            .decode(encoded)
            .map_err(|e| format!("_vobizTunnel.request_body_base64 is not base64 ({e})"))?,
        None => post_data(object(request, "postData", "request.postData")?)?,
    };
    let tls: TlsInfo = match field("tls") {
        Some(tls) => serde_json::from_value(tls.clone())
            .map_err(|e| format!("_vobizTunnel.tls is malformed ({e})"))?,
        None => TlsInfo::default(),
    };
    let record = RequestRecord {
        method: method.to_string(),
        target,
        http_version,
        host,
        public_url: url.to_string(),
        headers: headers(request, "request.headers")?,
        body: body.into(),
        body_truncated: field("body_truncated").and_then(Value::as_bool) == Some(true),
        client_addr: text("client_addr")?,
        tls,
    };
    let verdict = match field("signature") {
        Some(verdict) => serde_json::from_value::<Verdict>(verdict.clone())
            .map_err(|e| format!("_vobizTunnel.signature is not a verdict ({e})"))?,
        None => verify_record(&record, &Keys::default()),
    };
    let response = response(object(entry, "response", "response")?)?;
    let timings = match field("timings") {
        Some(timings) => serde_json::from_value::<Timings>(timings.clone())
            .map_err(|e| format!("_vobizTunnel.timings is malformed ({e})"))?,
        None => har_timings(entry, response.is_some())?,
    };

    let mut exchange = Exchange::received(record, verdict, timings.received_us);
    exchange.timings = timings;
    exchange.outcome = match text("outcome")?.as_deref().and_then(Outcome::parse) {
        Some(outcome) => outcome,
        None if response.is_some() => Outcome::Forwarded,
        None => Outcome::Pending,
    };
    exchange.response = response;
    if ours.is_some() {
        exchange.id = id("id")?;
        exchange.replay_of = id("replay_of")?;
        exchange.sent_to = text("sent_to")?;
        exchange.event = text("event")?;
        exchange.call_uuid = text("call_uuid")?;
        exchange.error = text("error")?;
        let flags = field("flags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        exchange.flags = flags
            .filter_map(Value::as_str)
            .filter_map(Flag::parse)
            .collect();
        // Absent in HARs written before the Vobiz checks existed: none, not an error.
        if let Some(findings) = field("findings") {
            exchange.findings = serde_json::from_value(findings.clone())
                .map_err(|e| format!("_vobizTunnel.findings is malformed ({e})"))?;
        }
    } else {
        // Chrome writes why a request got no answer here.
        let chrome_error = entry.get("response").and_then(|r| r.get("_error"));
        exchange.error = chrome_error.and_then(Value::as_str).map(String::from);
    }
    exchange.add_flag(Flag::Imported);
    Ok(exchange)
}

/// The request body from `postData`: `text` (base64 when `encoding` says so, as some tools
/// write), else the `params` form-encoded, else empty.
fn post_data(post: Option<&Object>) -> Result<Vec<u8>, String> {
    let Some(post) = post else {
        return Ok(Vec::new());
    };
    let base64 = string(post, "encoding", "request.postData.encoding")? == Some("base64");
    if let Some(text) = string(post, "text", "request.postData.text")? {
        return decode_text(text, base64, "request.postData.text");
    }
    let Some(params) = post.get("params").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut form = Vec::new();
    for (index, param) in params.iter().enumerate() {
        let param = param
            .as_object()
            .ok_or(format!("request.postData.params[{index}] is not an object"))?;
        let name = string(param, "name", "request.postData.params[].name")?.unwrap_or("");
        let value = string(param, "value", "request.postData.params[].value")?.unwrap_or("");
        form.push((name, value));
    }
    serde_urlencoded::to_string(form)
        .map(String::into_bytes)
        .map_err(|e| format!("request.postData.params cannot be form-encoded ({e})"))
}

/// The response, or `None` for the status 0 HAR tools write when nothing came back.
fn response(response: Option<&Object>) -> Result<Option<ResponseRecord>, String> {
    let Some(response) = response else {
        return Ok(None);
    };
    let status = match response.get("status") {
        None | Some(Value::Null) => 0,
        Some(value) => value
            .as_u64()
            .filter(|s| *s == 0 || (100..=999).contains(s))
            .ok_or(format!("response.status is not an HTTP status ({value})"))?,
    };
    if status == 0 {
        return Ok(None);
    }
    let body = match object(response, "content", "response.content")? {
        Some(content) => {
            let base64 =
                string(content, "encoding", "response.content.encoding")? == Some("base64");
            match string(content, "text", "response.content.text")? {
                Some(text) => decode_text(text, base64, "response.content.text")?,
                None => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    Ok(Some(ResponseRecord {
        status: status as u16,
        headers: headers(response, "response.headers")?,
        body: body.into(),
    }))
}

fn decode_text(text: &str, base64: bool, path: &str) -> Result<Vec<u8>, String> {
    if base64 {
        BASE64
            .decode(text.trim())
            .map_err(|e| format!("{path} is marked base64 but is not ({e})"))
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

/// `[{name, value}]`, exact bytes from `_base64` when present. HTTP/2 pseudo-headers
/// (`:authority`, ...) that browsers list are dropped: they are not headers to send again.
fn headers(parent: &Object, path: &str) -> Result<Headers, String> {
    let list = match parent.get("headers") {
        None | Some(Value::Null) => return Ok(Headers::default()),
        Some(list) => list.as_array().ok_or(format!("{path} is not an array"))?,
    };
    let mut headers = Vec::with_capacity(list.len());
    for (index, header) in list.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let header = header.as_object().ok_or(format!("{at} is not an object"))?;
        let name = string(header, "name", &format!("{at}.name"))?
            .ok_or(format!("{at}.name is missing"))?;
        if name.starts_with(':') {
            continue;
        }
        let value = match string(header, "_base64", &format!("{at}._base64"))? {
            Some(encoded) => BASE64
                .decode(encoded)
                .map_err(|e| format!("{at}._base64 is not base64 ({e})"))?,
            None => string(header, "value", &format!("{at}.value"))?
                .unwrap_or("")
                .as_bytes()
                .to_vec(),
        };
        // What the stored header block cannot hold would corrupt it: a line break in a value
        // starts a header of its own (which a replay would then send), a colon in a name
        // moves the split. Anything else is kept as it came, as the listener keeps a request
        // it refused for a header no HTTP message may carry (a replay of it says so).
        let line_break = |bytes: &[u8]| bytes.iter().any(|&b| b == b'\r' || b == b'\n');
        if name.is_empty() || name.contains(':') || line_break(name.as_bytes()) {
            return Err(format!("{at}.name cannot be a header name ({name:?})"));
        }
        if line_break(&value) {
            return Err(format!("{at}.value of {name} holds a line break"));
        }
        headers.push((name.to_string(), value));
    }
    Ok(Headers(headers))
}

/// Instants from `startedDateTime` and the HAR phases (or `time` when there are none).
fn har_timings(entry: &Object, answered: bool) -> Result<Timings, String> {
    let started =
        string(entry, "startedDateTime", "startedDateTime")?.ok_or("startedDateTime is missing")?;
    let received_us = iso::parse_micros(started).ok_or(format!(
        "startedDateTime is not an ISO 8601 date-time ({started:?})"
    ))?;
    // HAR writes -1 for "not applicable"; milliseconds with fractions.
    let micros = |value: Option<&Value>| {
        let ms = value.and_then(Value::as_f64).filter(|ms| *ms >= 0.0)?;
        Some((ms * 1000.0).round() as i64)
    };
    let phases = entry.get("timings");
    let phase = |name: &str| micros(phases.and_then(|t| t.get(name)));
    let mut timings = Timings {
        received_us,
        ..Timings::default()
    };
    let total = micros(entry.get("time"));
    // Saturating: a file may hold any number (the phases saturate at i64::MAX µs).
    if answered && phases.is_some() {
        let forwarded = received_us.saturating_add(phase("send").unwrap_or(0));
        let first_byte = forwarded.saturating_add(phase("wait").unwrap_or(0));
        timings.forwarded_us = Some(forwarded);
        timings.first_byte_us = Some(first_byte);
        timings.done_us = Some(first_byte.saturating_add(phase("receive").unwrap_or(0)));
    } else {
        timings.done_us = total.map(|t| received_us.saturating_add(t));
    }
    Ok(timings)
}

/// `parent[key]` as an object; absent or null is `None`, another type an error.
fn object<'a>(parent: &'a Object, key: &str, path: &str) -> Result<Option<&'a Object>, String> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_object()
            .map(Some)
            .ok_or(format!("{path} is not an object")),
    }
}

/// `parent[key]` as a string; absent or null is `None`, another type an error.
fn string<'a>(parent: &'a Object, key: &str, path: &str) -> Result<Option<&'a str>, String> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_str()
            .map(Some)
            .ok_or(format!("{path} is not a string")),
    }
}
