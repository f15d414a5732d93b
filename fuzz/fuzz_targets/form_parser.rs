//! The form parser of `exchange.rs`: `RequestRecord::form_field` (the fast scan that fills
//! the `event` and `call_uuid` columns), `RequestRecord::form_fields` (the form tables,
//! HAR `params`) and the `Headers` storage block (`to_block` / `from_block`).
//!
//! Properties: nothing panics; the scan finds the same value as the full parse (the first
//! pair whose raw key is the name, for names that need no decoding); `Exchange::received`
//! derives `event` and `call_uuid` from the scan; a header block reads back as written.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use vobiz_tunnel::exchange::{Exchange, Headers, RequestRecord};
use vobiz_tunnel::signature::{Verdict, VerdictStatus};

#[derive(Arbitrary, Debug)]
enum ContentType {
    Absent,
    Form,
    FormCharset,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    target: String,
    body: Vec<u8>,
    content_type: ContentType,
    name: String,
    headers: Vec<(String, Vec<u8>)>,
}

fn unsigned() -> Verdict {
    Verdict::bare(VerdictStatus::Unsigned)
}

/// A name the scan can find without decoding: what `Event` and `CallUUID` are.
fn plain(name: &str) -> bool {
    !name.is_empty() && !name.contains(['%', '+', '&', '='])
}

fuzz_target!(|input: Input| {
    let content_type = match &input.content_type {
        ContentType::Absent => None,
        ContentType::Form => Some("application/x-www-form-urlencoded".to_string()),
        ContentType::FormCharset => {
            Some("application/x-www-form-urlencoded; charset=utf-8".to_string())
        }
        ContentType::Other(ct) => Some(ct.clone()),
    };
    let mut headers = Headers::default();
    if let Some(ct) = &content_type {
        headers
            .0
            .push(("Content-Type".into(), ct.clone().into_bytes()));
    }
    let request = RequestRecord {
        method: "POST".into(),
        target: input.target.clone(),
        headers,
        body: Bytes::from(input.body.clone()),
        ..RequestRecord::default()
    };
    let _ = request.path();
    let fields = request.form_fields();

    // The model: the body when it is a non-empty form post, else the query string.
    let is_form = !input.body.is_empty()
        && content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let source: Option<&[u8]> = match is_form {
        true => Some(&input.body),
        false => input.target.split_once('?').map(|(_, q)| q.as_bytes()),
    };
    let segments: Vec<&[u8]> = source
        .unwrap_or_default()
        .split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        fields.len(),
        segments.len(),
        "one field per non-empty &-separated segment: {fields:?}"
    );
    for name in [input.name.as_str(), "Event", "CallUUID"] {
        let found = request.form_field(name);
        if !plain(name) {
            continue;
        }
        let raw_key = |s: &[u8]| s.split(|&b| b == b'=').next() == Some(name.as_bytes());
        let expected = segments
            .iter()
            .position(|s| raw_key(s))
            .map(|i| fields[i].1.clone());
        assert_eq!(found, expected, "form_field({name:?})");
    }

    let event = request.form_field("Event").filter(|v| !v.is_empty());
    let call_uuid = request.form_field("CallUUID").filter(|v| !v.is_empty());
    let exchange = Exchange::received(request, unsigned(), 0);
    assert_eq!(exchange.event, event);
    assert_eq!(exchange.call_uuid, call_uuid);

    // The storage form of headers: exact for anything HTTP can carry (no `:` in a name, no
    // line break in a name or value).
    let headers = Headers(input.headers);
    let block = headers.to_block();
    let back = Headers::from_block(&block);
    let representable = headers
        .0
        .iter()
        .all(|(n, v)| !n.contains([':', '\n']) && !v.contains(&b'\n'));
    if representable {
        assert_eq!(back, headers, "block {:?}", String::from_utf8_lossy(&block));
    }
});
