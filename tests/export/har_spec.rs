//! A checker for HAR 1.2 (<http://www.softwareishard.com/blog/har-12-spec/>): every field the
//! spec marks required is present with its type, and the numeric rules hold (sizes -1 or
//! more, timings -1 or more with send/wait/receive never -1, `time` the sum of the phases).

use serde_json::Value;

fn at<'a>(value: &'a Value, path: &str, key: &str) -> &'a Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("{path}.{key} is required"))
}

fn string(value: &Value, path: &str, key: &str) -> String {
    at(value, path, key)
        .as_str()
        .unwrap_or_else(|| panic!("{path}.{key} must be a string"))
        .to_string()
}

fn number(value: &Value, path: &str, key: &str) -> f64 {
    at(value, path, key)
        .as_f64()
        .unwrap_or_else(|| panic!("{path}.{key} must be a number"))
}

fn integer(value: &Value, path: &str, key: &str) -> i64 {
    let n = at(value, path, key)
        .as_i64()
        .unwrap_or_else(|| panic!("{path}.{key} must be an integer"));
    assert!(n >= -1, "{path}.{key} is {n}");
    n
}

fn array<'a>(value: &'a Value, path: &str, key: &str) -> &'a Vec<Value> {
    at(value, path, key)
        .as_array()
        .unwrap_or_else(|| panic!("{path}.{key} must be an array"))
}

/// `[{name, value}]` lists: headers, queryString, params.
fn pairs(value: &Value, path: &str, key: &str) {
    for (i, pair) in array(value, path, key).iter().enumerate() {
        let here = format!("{path}.{key}[{i}]");
        string(pair, &here, "name");
        string(pair, &here, "value");
    }
}

/// Panics with the path of the first field that breaks HAR 1.2.
pub fn validate(har: &Value) {
    let log = at(har, "", "log");
    assert_eq!(string(log, "log", "version"), "1.2");
    let creator = at(log, "log", "creator");
    assert_eq!(string(creator, "log.creator", "name"), "vobiz-tunnel");
    assert_eq!(
        string(creator, "log.creator", "version"),
        env!("CARGO_PKG_VERSION")
    );
    for (i, entry) in array(log, "log", "entries").iter().enumerate() {
        let path = format!("log.entries[{i}]");
        let started = string(entry, &path, "startedDateTime");
        // ISO 8601 with an offset, e.g. 2026-06-08T11:41:20.130+00:00.
        let bytes = started.as_bytes();
        assert!(
            started.len() >= 25 && bytes[10] == b'T' && bytes[started.len() - 3] == b':',
            "{path}.startedDateTime {started:?}"
        );
        assert!(matches!(bytes[started.len() - 6], b'+' | b'-'), "{started}");
        let time = number(entry, &path, "time");

        let request = at(entry, &path, "request");
        let rpath = format!("{path}.request");
        string(request, &rpath, "method");
        let url = string(request, &rpath, "url");
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{url}"
        );
        string(request, &rpath, "httpVersion");
        array(request, &rpath, "cookies");
        pairs(request, &rpath, "headers");
        pairs(request, &rpath, "queryString");
        integer(request, &rpath, "headersSize");
        integer(request, &rpath, "bodySize");
        if let Some(post) = request.get("postData") {
            let ppath = format!("{rpath}.postData");
            string(post, &ppath, "mimeType");
            string(post, &ppath, "text");
            if post.get("params").is_some() {
                pairs(post, &ppath, "params");
            }
        }

        let response = at(entry, &path, "response");
        let rpath = format!("{path}.response");
        integer(response, &rpath, "status");
        string(response, &rpath, "statusText");
        string(response, &rpath, "httpVersion");
        array(response, &rpath, "cookies");
        pairs(response, &rpath, "headers");
        let content = at(response, &rpath, "content");
        let cpath = format!("{rpath}.content");
        integer(content, &cpath, "size");
        string(content, &cpath, "mimeType");
        if content.get("text").is_some() {
            string(content, &cpath, "text");
        }
        if content.get("encoding").is_some() {
            assert_eq!(string(content, &cpath, "encoding"), "base64");
        }
        string(response, &rpath, "redirectURL");
        integer(response, &rpath, "headersSize");
        integer(response, &rpath, "bodySize");

        assert!(at(entry, &path, "cache").is_object(), "{path}.cache");
        let timings = at(entry, &path, "timings");
        let tpath = format!("{path}.timings");
        let mut sum = 0.0;
        for phase in [
            "blocked", "dns", "connect", "ssl", "send", "wait", "receive",
        ] {
            let ms = number(timings, &tpath, phase);
            let optional = !matches!(phase, "send" | "wait" | "receive");
            assert!(
                ms >= 0.0 || (optional && ms == -1.0),
                "{tpath}.{phase} {ms}"
            );
            sum += ms.max(0.0);
        }
        assert!((time - sum).abs() < 1e-6, "{path}.time {time} != {sum}");
        for (key, _) in entry.as_object().into_iter().flatten() {
            let known = [
                "pageref",
                "startedDateTime",
                "time",
                "request",
                "response",
                "cache",
                "timings",
                "serverIPAddress",
                "connection",
                "comment",
            ];
            assert!(
                known.contains(&key.as_str()) || key.starts_with('_'),
                "{path}.{key} is neither HAR nor a custom _field"
            );
        }
    }
}
