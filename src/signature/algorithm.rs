//! The exact strings Vobiz (and its SDKs) sign, plus the primitives around them.
//!
//! This file owns *what bytes get signed* (spec §2): the V1 string (Go/Node SDK form), V2,
//! V3 in the documented form and V3 in the Python SDK form, the HMAC/base64 step, the
//! constant-time comparison and the splitting of a signature header into members.
//! Nothing here knows about headers, keys or verdicts; `verify`, `explain` and `sign` build
//! on these functions so that signing and verifying can never drift apart.

use std::collections::BTreeMap;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Form parameters grouped by key. `BTreeMap<String, _>` iterates in UTF-8 byte order, which
/// is the same as Python's code-point order (`B` < `_` < `a`), so no extra sort is needed.
pub(super) type Params = BTreeMap<String, Vec<String>>;

/// `base64(HMAC-SHA256(key, msg))`, standard alphabet with padding (what Vobiz sends).
pub(super) fn hmac_sha256_b64(key: &[u8], msg: &str) -> String {
    // HMAC accepts keys of any length, so the error arm is unreachable; we still avoid a
    // panic path and return a value no trimmed, non-empty header member can equal.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(msg.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// HMAC-SHA256 keyed with `key`, for [`hmac_sha256_b64_with`] (`None` cannot happen: HMAC
/// takes keys of any length).
pub(super) fn hmac_sha256_keyed(key: &[u8]) -> Option<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(key).ok()
}

/// [`hmac_sha256_b64`] from an already keyed HMAC (the key schedule is half the work for a
/// short message).
pub(super) fn hmac_sha256_b64_with(keyed: &Hmac<Sha256>, msg: &str) -> String {
    let mut mac = keyed.clone();
    mac.update(msg.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `base64(HMAC-SHA1(key, msg))` for the legacy V1 header.
pub(super) fn hmac_sha1_b64(key: &[u8], msg: &str) -> String {
    match Hmac::<Sha1>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(msg.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Constant-time equality of two signature strings (length is not secret).
pub(super) fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The members of a signature header: split on `,`, trim spaces/tabs (the SDKs don't trim,
/// so `"a, sig"` fails there; we accept it), drop empty members. Newlines are *not* trimmed:
/// a value with a trailing `\n` is a different value.
pub(crate) fn members(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
}

/// The member of `value` equal to `expected`, if any. Every member is compared, so the time
/// taken does not reveal which member (or how much of it) matched.
pub(super) fn matching_member<'v>(value: &'v str, expected: &str) -> Option<&'v str> {
    let mut found = None;
    for m in members(value) {
        if ct_eq(m, expected) && found.is_none() {
            found = Some(m);
        }
    }
    found
}

/// Splits a URL into `(base, query)`: `base` is everything before the first `?` or `#`
/// (the docs' "callback URL minus ?query and #fragment"); `query` is the text between `?`
/// and `#`, or `None`. Works on any string, so garbage URLs cannot panic.
pub(super) fn split_url(url: &str) -> (&str, Option<&str>) {
    match url.find(['?', '#']) {
        Some(i) => {
            let (base, rest) = url.split_at(i);
            match rest.strip_prefix('?') {
                Some(q) => (base, Some(q.split('#').next().unwrap_or_default())),
                None => (base, None),
            }
        }
        None => (url, None),
    }
}

/// V2 string to sign: `base + nonce`, no separator (spec §2.1).
pub(super) fn v2_string(base: &str, nonce: &str) -> String {
    let mut s = String::with_capacity(base.len() + nonce.len());
    s.push_str(base);
    s.push_str(nonce);
    s
}

/// V3 string to sign, documented form: `base + "." + nonce` (spec §2.1).
pub(super) fn v3_docs_string(base: &str, nonce: &str) -> String {
    let mut s = String::with_capacity(base.len() + nonce.len() + 1);
    s.push_str(base);
    s.push('.');
    s.push_str(nonce);
    s
}

/// V1 string to sign (Go/Node SDK form): the URL as given + `key+value` of every parameter,
/// keys sorted. The server's real V1 input is unknown (spec §2.7), so this is display-only.
pub(super) fn v1_string(url: &str, params: &Params) -> String {
    let mut s = String::from(url);
    concat_params(&mut s, params);
    s
}

/// V3 string to sign in the Python SDK form (`validate_v3_signature`, spec §2.3).
/// `None` for methods other than GET/POST, which the SDK rejects.
pub(super) fn v3_sdk_string(
    method: &str,
    url: &str,
    params: &Params,
    nonce: &str,
) -> Option<String> {
    let (base, query) = split_url(url);
    let q = parse_form(query.unwrap_or_default().as_bytes());
    let mut s = String::from(base);
    if method.eq_ignore_ascii_case("GET") {
        // GET: params and query merged into one sorted `k=v&…` list; the query wins on a
        // duplicate key (Python `m = params; m.update(q)`).
        let mut merged = params.clone();
        merged.extend(q);
        push_query(&mut s, &merged, true);
    } else if method.eq_ignore_ascii_case("POST") {
        if params.is_empty() {
            push_query(&mut s, &q, true);
        } else {
            // `?` always, then the sorted query, a `.` only if there was a query, then P(params).
            push_query(&mut s, &q, false);
            if !q.is_empty() {
                s.push('.');
            }
            concat_params(&mut s, params);
        }
    } else {
        return None;
    }
    s.push('.');
    s.push_str(nonce);
    Some(s)
}

/// Appends `?k=v&k=v…` (decoded, keys sorted, each key's values sorted). With
/// `only_if_nonempty`, nothing (not even `?`) is appended when there are no pairs.
fn push_query(s: &mut String, q: &Params, only_if_nonempty: bool) {
    if q.is_empty() && only_if_nonempty {
        return;
    }
    s.push('?');
    let mut first = true;
    for (k, v) in sorted_pairs(q) {
        if !first {
            s.push('&');
        }
        first = false;
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
}

/// Appends `k + v` for every pair (keys sorted, values sorted); an empty value therefore
/// contributes only its key, exactly as the SDK's `'%s%s' % (key, value)` does.
fn concat_params(s: &mut String, params: &Params) {
    for (k, v) in sorted_pairs(params) {
        s.push_str(k);
        s.push_str(v);
    }
}

/// Pairs in SDK order: keys by code point, each key's values sorted as strings
/// (`["9","10","1"]` → `1, 10, 9`).
fn sorted_pairs(params: &Params) -> impl Iterator<Item = (&str, &str)> {
    params.iter().flat_map(|(k, vs)| {
        let mut vs: Vec<&str> = vs.iter().map(String::as_str).collect();
        vs.sort_unstable();
        vs.into_iter().map(move |v| (k.as_str(), v))
    })
}

/// Decodes `application/x-www-form-urlencoded` bytes (`+` → space, `%XX`, lossy UTF-8, blank
/// values kept, like Python's `parse_qs(keep_blank_values=True)`) and groups repeated keys.
pub(super) fn parse_form(bytes: &[u8]) -> Params {
    group(serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default())
}

/// Groups `(key, value)` pairs by key, keeping every value of a repeated key.
pub(super) fn group<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Params {
    let mut m = Params::new();
    for (k, v) in pairs {
        m.entry(k).or_default().push(v);
    }
    m
}

/// `%XX` → byte, as Go's `url.Parse` does for `Path` (no `+` → space in paths).
pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|h| (*h as char).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        group(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn split_url_strips_query_and_fragment() {
        assert_eq!(
            split_url("https://e.com/a?x=1#f"),
            ("https://e.com/a", Some("x=1"))
        );
        assert_eq!(
            split_url("https://e.com/a#f?x=1"),
            ("https://e.com/a", None)
        );
        assert_eq!(split_url("https://e.com/a?"), ("https://e.com/a", Some("")));
        assert_eq!(split_url("no url at all"), ("no url at all", None));
        assert_eq!(split_url(""), ("", None));
    }

    #[test]
    fn members_split_and_trim_spaces_only() {
        let m: Vec<_> = members(" a ,b,, \tc\t,d\n").collect();
        assert_eq!(m, ["a", "b", "c", "d\n"]);
        assert_eq!(members(" , ").count(), 0);
        assert_eq!(matching_member("AAAA, sig", "sig"), Some("sig"));
        assert_eq!(matching_member("sig\n", "sig"), None);
    }

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "abcd"));
    }

    #[test]
    fn plivo_v2_unit_vector() {
        let s = v2_string("https://answer.url", "12345");
        assert_eq!(
            hmac_sha256_b64(b"my_auth_token", &s),
            "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
        );
    }

    #[test]
    fn sdk_post_query_and_body() {
        let s = v3_sdk_string(
            "post",
            "https://e.com/a?tenant=acme&b=2",
            &p(&[("Event", "X"), ("A", "")]),
            "N",
        );
        assert_eq!(
            s.as_deref(),
            Some("https://e.com/a?b=2&tenant=acme.AEventX.N")
        );
    }

    #[test]
    fn sdk_post_body_only_and_query_only() {
        let body = v3_sdk_string("POST", "https://e.com/a", &p(&[("k", "v")]), "N");
        assert_eq!(body.as_deref(), Some("https://e.com/a?kv.N"));
        let query = v3_sdk_string("POST", "https://e.com/a?b=%C3%A9+x&a", &Params::new(), "N");
        assert_eq!(query.as_deref(), Some("https://e.com/a?a=&b=é x.N"));
        let bare = v3_sdk_string("POST", "https://e.com/a#frag", &Params::new(), "N");
        assert_eq!(bare.as_deref(), Some("https://e.com/a.N"));
    }

    #[test]
    fn sdk_get_query_wins_and_lists_sorted() {
        let params = p(&[("x", "body"), ("y", "1")]);
        let s = v3_sdk_string("GET", "https://e.com/a?x=q&x=a&B=1", &params, "N");
        assert_eq!(s.as_deref(), Some("https://e.com/a?B=1&x=a&x=q&y=1.N"));
        assert_eq!(
            v3_sdk_string("GET", "https://e.com/a", &Params::new(), "N").as_deref(),
            Some("https://e.com/a.N")
        );
    }

    #[test]
    fn sdk_rejects_other_methods() {
        assert_eq!(
            v3_sdk_string("PUT", "https://e.com/", &Params::new(), "N"),
            None
        );
    }

    #[test]
    fn code_point_order_and_value_sorting() {
        let s = v3_sdk_string(
            "POST",
            "u",
            &p(&[("a", "1"), ("_", "2"), ("B", "3"), ("D", "9"), ("D", "10")]),
            "N",
        );
        assert_eq!(s.as_deref(), Some("u?B3D10D9_2a1.N"));
    }

    #[test]
    fn v1_is_url_plus_sorted_pairs() {
        assert_eq!(
            v1_string("https://e.com/a?q=1", &p(&[("b", "2"), ("a", "1")])),
            "https://e.com/a?q=1a1b2"
        );
    }

    #[test]
    fn parse_form_is_lossy_not_failing() {
        assert_eq!(
            parse_form(b"a=1&a=2&b"),
            p(&[("a", "1"), ("a", "2"), ("b", "")])
        );
        assert_eq!(parse_form(b"{\"json\": true}").len(), 1);
        assert_eq!(parse_form(&[0xff, b'=', 0xfe]).len(), 1);
        assert!(parse_form(b"").is_empty());
    }

    #[test]
    fn percent_decoding_is_byte_wise_and_lenient() {
        assert_eq!(percent_decode("/%41%zz%4"), "/A%zz%4");
        assert_eq!(percent_decode("/a%20b/%C3%A9+"), "/a b/é+");
        assert_eq!(percent_decode("/%FF"), "/\u{FFFD}");
    }
}
