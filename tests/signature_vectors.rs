//! Known-answer vectors computed by the official Python SDK (spec §3,
//! `tests/data/signature-vectors.json`) and the tampered variants of spec §3, through the
//! public API only: every vector must be reproduced by our signing functions and accepted
//! by `verify()` with the right scheme, form and key; every tampering must be rejected,
//! and the near-miss explanation must name what changed.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use vobiz_tunnel::signature::*;

const T: &str = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
const PT: &str = "PARENTtokenNOTreal9876543210zyxwvutsrqpo";
const N: &str = "12345678901234567890";
const V2: &str = "X-Vobiz-Signature-V2";
const V3: &str = "X-Vobiz-Signature-V3";
const V2N: &str = "X-Vobiz-Signature-V2-Nonce";
const V3N: &str = "X-Vobiz-Signature-V3-Nonce";
const MA2: &str = "X-Vobiz-Signature-MA-V2";
const MA3: &str = "X-Vobiz-Signature-MA-V3";

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    id: String,
    auth_token: String,
    method: String,
    url: String,
    params: Option<serde_json::Map<String, Value>>,
    nonce: String,
    string_to_sign: String,
    signature: String,
    scheme: String,
    docs_v3_signature: Option<String>,
    note: String,
}

fn vectors() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/signature-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("vector file");
    serde_json::from_str::<File>(&text)
        .expect("vector JSON")
        .vectors
}

/// JSON params as form pairs: a list is a repeated key; scalars as Python's `str()`.
fn pairs(params: &Option<serde_json::Map<String, Value>>) -> Vec<(String, String)> {
    let py = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    };
    let mut out = Vec::new();
    for (k, v) in params.iter().flatten() {
        match v {
            Value::Array(items) => out.extend(items.iter().map(|i| (k.clone(), py(i)))),
            v => out.push((k.clone(), py(v))),
        }
    }
    out
}

fn keys(auth: &[&str], main: &[&str]) -> Keys {
    let t = |v: &[&str]| v.iter().map(|s| AuthToken::new(*s)).collect();
    Keys {
        auth_tokens: t(auth),
        main_auth_tokens: t(main),
    }
}

/// Verifies a callback; `extra_ports` are offered to the explanation.
fn call(
    method: &str,
    url: &str,
    body: &str,
    hs: &[(&str, &str)],
    k: &Keys,
    ports: &[u16],
) -> Verdict {
    let headers: Vec<(String, String)> = hs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let (headers, body, extra_ports) = (&headers[..], body.as_bytes(), ports);
    verify(
        &CallbackRequest {
            method,
            url,
            headers,
            body,
            extra_ports,
            other_urls: &[],
        },
        k,
    )
}

fn post(url: &str, body: &str, hs: &[(&str, &str)], k: &Keys) -> Verdict {
    call("POST", url, body, hs, k, &[])
}

fn matched(v: &Verdict) -> &Attempt {
    let mut attempts = v.checks.iter().flat_map(|c| &c.attempts);
    attempts.find(|a| a.matched).expect("a matching attempt")
}

fn check_v2_vector(v: &Vector) {
    let (id, token) = (&v.id, AuthToken::new(v.auth_token.as_str()));
    assert_eq!(sign_v2(&token, &v.url, &v.nonce), v.signature, "{id}");
    let verdict = post(
        &v.url,
        "",
        &[(V2, &v.signature), (V2N, &v.nonce)],
        &keys(&[&v.auth_token], &[]),
    );
    assert_eq!(verdict.status, VerdictStatus::Valid, "{id}: {verdict:?}");
    assert_eq!(
        (verdict.scheme, verdict.form),
        (Some(Scheme::V2), None),
        "{id}"
    );
    assert_eq!(
        verdict.key,
        Some(format!("auth token #1 ({})", token.redacted()))
    );
    assert_eq!(verdict.nonce.as_deref(), Some(v.nonce.as_str()));
    assert_eq!(verdict.signature.as_deref(), Some(v.signature.as_str()));
    assert_eq!(matched(&verdict).string_to_sign, v.string_to_sign, "{id}");
    if v.note.contains("MA-V2") {
        let hs = [
            ("x-vobiz-signature-ma-v2", v.signature.as_str()),
            (V2N, &v.nonce),
        ];
        let verdict = post(&v.url, "", &hs, &keys(&[], &[&v.auth_token]));
        assert_eq!(
            (verdict.status, verdict.scheme),
            (VerdictStatus::Valid, Some(Scheme::MaV2))
        );
        assert_eq!(
            verdict.key,
            Some(format!("main auth token ({})", token.redacted()))
        );
    }
}

fn check_v3_vector(v: &Vector) {
    let (id, token) = (&v.id, AuthToken::new(v.auth_token.as_str()));
    assert_eq!(v.scheme, "V3-sdk", "{id}");
    let params = pairs(&v.params);
    let sdk = sign_v3_sdk(&token, &v.method, &v.url, &params, &v.nonce);
    assert_eq!(sdk.as_deref(), Some(v.signature.as_str()), "{id}");
    let docs = v
        .docs_v3_signature
        .as_deref()
        .expect("docs value for V3 rows");
    assert_eq!(sign_v3_docs(&token, &v.url, &v.nonce), docs, "{id}");

    // Vobiz sends GET fields in the query string and POST fields as the form body.
    let body = match v.method.as_str() {
        "POST" => serde_urlencoded::to_string(&params).expect("form"),
        _ => String::new(),
    };
    let sdk_form = if v.signature == docs {
        Form::Docs
    } else {
        Form::Sdk
    };
    let (auth, main) = (keys(&[&v.auth_token], &[]), keys(&[], &[&v.auth_token]));
    for (value, form) in [(v.signature.as_str(), sdk_form), (docs, Form::Docs)] {
        for (name, k, scheme) in [(V3, &auth, Scheme::V3), (MA3, &main, Scheme::MaV3)] {
            let verdict = call(
                &v.method,
                &v.url,
                &body,
                &[(name, value), (V3N, &v.nonce)],
                k,
                &[],
            );
            assert_eq!(
                verdict.status,
                VerdictStatus::Valid,
                "{id} {name}: {verdict:#?}"
            );
            assert_eq!(
                (verdict.scheme, verdict.form),
                (Some(scheme), Some(form)),
                "{id}"
            );
            assert_eq!(verdict.signature.as_deref(), Some(value));
            if form == sdk_form {
                assert_eq!(matched(&verdict).string_to_sign, v.string_to_sign, "{id}");
            }
        }
    }
    let verdict = call(
        &v.method,
        &v.url,
        &body,
        &[(V3, docs), (V3N, &v.nonce)],
        &auth,
        &[],
    );
    let label = format!("auth token #1 ({})", token.redacted());
    assert_eq!(verdict.summary(), format!("valid (V3, docs form, {label})"));
}

#[test]
fn every_vector_signs_and_verifies() {
    let all = vectors();
    assert_eq!(all.len(), 13, "vector file changed?");
    for v in &all {
        match v.scheme.as_str() {
            "V2" => check_v2_vector(v),
            _ => check_v3_vector(v),
        }
    }
}

/// V3-02: the 22-field Hangup form, signed in the SDK form; returns it and its form body.
fn hangup() -> (Vector, String) {
    let v = vectors()
        .into_iter()
        .find(|v| v.id == "V3-02")
        .expect("V3-02");
    let body = serde_urlencoded::to_string(pairs(&v.params)).expect("form");
    (v, body)
}

#[test]
fn tampered_hangup_is_rejected() {
    let (v, body) = hangup();
    let (url, sig, k) = (v.url.as_str(), v.signature.as_str(), keys(&[T], &[]));
    let hs = [(V3, sig), (V3N, N)];
    assert_eq!(post(url, &body, &hs, &k).status, VerdictStatus::Valid);
    assert_eq!(
        call("post", url, &body, &hs, &k, &[]).status,
        VerdictStatus::Valid
    );

    let wrong_token = post(url, &body, &hs, &keys(&["not-the-token-at-all"], &[]));
    assert_eq!(
        (wrong_token.status, wrong_token.would_match),
        (VerdictStatus::Invalid, None)
    );
    let other_nonce = [(V3, sig), (V3N, "12345678901234567891")];
    assert_eq!(
        post(url, &body, &other_nonce, &k).status,
        VerdictStatus::Invalid
    );

    let changed = body.replace("HangupSource=Caller", "HangupSource=Callee");
    assert_ne!(changed, body);
    let verdict = post(url, &changed, &hs, &k);
    assert_eq!(verdict.status, VerdictStatus::Invalid);
    let sdk_attempt = |a: &Attempt| a.form == Form::Sdk && a.string_to_sign.contains("Callee");
    assert!(verdict.checks[0].attempts.iter().any(sdk_attempt));
}

#[test]
fn tampered_urls_are_explained() {
    let (v, body) = hangup();
    let cases = [
        ("http://example.com/vobiz/hangup", "https instead of http"),
        ("https://EXAMPLE.COM/vobiz/hangup", "host lower-cased"),
        ("https://example.com:443/vobiz/hangup", "port 443 removed"),
    ];
    for (url, variant) in cases {
        let verdict = post(
            url,
            &body,
            &[(V3, &v.signature), (V3N, N)],
            &keys(&[T], &[]),
        );
        assert_eq!(verdict.status, VerdictStatus::Invalid, "{url}");
        let nm = verdict.would_match.as_ref().expect("explained");
        assert_eq!(
            (nm.variant.as_str(), nm.url.as_str()),
            (variant, v.url.as_str())
        );
        assert_eq!(
            (nm.form, nm.key.as_str()),
            (Form::Sdk, "auth token #1 (TEST…XYZ)")
        );
        let sentence = format!(
            "Would be valid if Vobiz had called {} ({variant}, SDK form)",
            v.url
        );
        assert_eq!(nm.sentence, sentence);
        assert_eq!(verdict.explanation[0], sentence, "most important first");
        let summary = format!(
            "invalid: would be valid if Vobiz had called {} ({variant})",
            v.url
        );
        assert_eq!(verdict.summary(), summary);
    }
}

#[test]
fn header_lists_are_trimmed_but_values_are_exact() {
    let (v, body) = hangup();
    let (sig, k) = (&v.signature, keys(&[T], &[]));
    for value in [
        format!("AAAA,{sig}"),
        format!("AAAA, {sig}"),
        format!(" {sig} ,BBBB"),
    ] {
        let verdict = post(&v.url, &body, &[(V3, &value), (V3N, N)], &k);
        assert_eq!(verdict.status, VerdictStatus::Valid, "{value}");
        assert_eq!(verdict.signature.as_ref(), Some(sig));
    }
    let url = "https://example.com/vobiz/answer";
    let v2 = sign_v2(&AuthToken::new(T), url, N);
    assert_eq!(
        post(url, "", &[(V2, &v2), (V2N, N)], &k).status,
        VerdictStatus::Valid
    );
    for bad in [format!("{v2}\n"), v2.trim_end_matches('=').to_owned()] {
        let verdict = post(url, "", &[(V2, &bad), (V2N, N)], &k);
        assert_eq!(verdict.status, VerdictStatus::Invalid, "{bad:?}");
    }
}

#[test]
fn docs_signature_with_body_verifies_in_docs_form() {
    let (v, body) = hangup();
    let docs = v.docs_v3_signature.as_deref().expect("docs");
    let verdict = post(&v.url, &body, &[(V3, docs), (V3N, N)], &keys(&[T], &[]));
    assert_eq!(
        (verdict.status, verdict.form),
        (VerdictStatus::Valid, Some(Form::Docs))
    );
    let attempts = verdict.checks[0].attempts.len();
    assert_eq!(attempts, 1, "docs form first: one HMAC, no SDK attempt");
}

#[test]
fn swapped_nonce_headers_are_explained() {
    let url = "https://example.com/vobiz/hangup";
    let (t, k) = (AuthToken::new(T), keys(&[T], &[]));
    let (n2, n3) = ("11111111111111111111", "22222222222222222222");
    // Each signature is right for its algorithm, but made with the other header's nonce.
    let (v2, v3) = (sign_v2(&t, url, n3), sign_v3_docs(&t, url, n2));
    let verdict = post(url, "", &[(V2, &v2), (V3, &v3), (V2N, n2), (V3N, n3)], &k);
    assert_eq!(verdict.status, VerdictStatus::Invalid);
    let miss = verdict.would_match.as_ref().expect("a near miss");
    assert_eq!(miss.variant, "V2/V3 nonces swapped");
    assert!(
        miss.sentence
            .contains("signed with the nonce in X-Vobiz-Signature-V2-Nonce"),
        "{}",
        miss.sentence
    );
    assert!(
        verdict.summary().contains("nonce headers were swapped"),
        "{}",
        verdict.summary()
    );
}

#[test]
fn swapped_v2_v3_headers_are_explained() {
    let url = "https://example.com/vobiz/hangup";
    let (t, k) = (AuthToken::new(T), keys(&[T], &[]));
    let v2_in_v3 = post(url, "", &[(V3, &sign_v2(&t, url, N)), (V3N, N)], &k);
    let v3_in_v2 = post(url, "", &[(V2, &sign_v3_docs(&t, url, N)), (V2N, N)], &k);
    for verdict in [v2_in_v3, v3_in_v2] {
        assert_eq!(verdict.status, VerdictStatus::Invalid);
        let variant = verdict.would_match.as_ref().map(|m| m.variant.as_str());
        assert_eq!(variant, Some("V2/V3 headers swapped"));
        assert!(
            verdict.explanation[0].contains("headers were swapped"),
            "{:?}",
            verdict.explanation
        );
        let summary = "invalid: would be valid if the V2 and V3 headers were swapped";
        assert_eq!(verdict.summary(), summary);
    }
    // The realistic swap: both signature headers exchanged, nonce headers left in place.
    let (n2, n3) = ("11111111111111111111", "22222222222222222222");
    let (v2, v3) = (sign_v3_docs(&t, url, n3), sign_v2(&t, url, n2));
    let verdict = post(url, "", &[(V2, &v2), (V3, &v3), (V2N, n2), (V3N, n3)], &k);
    assert_eq!(verdict.would_match.map(|m| m.header), Some(V3.to_owned()));
}

/// Vobiz signed the docs form over `signed`; we saw `seen` (with a second token configured).
fn near_miss_for(signed: &str, seen: &str, ports: &[u16]) -> Option<NearMiss> {
    let sig = sign_v3_docs(&AuthToken::new(T), signed, N);
    let k = keys(&["other-token-1", T], &[]);
    let verdict = call("POST", seen, "a=1", &[(V3, &sig), (V3N, N)], &k, ports);
    assert_eq!(verdict.status, VerdictStatus::Invalid, "{signed} vs {seen}");
    verdict.would_match
}

#[test]
fn every_url_variant_is_found() {
    // signed | seen | extra ports | variant
    let cases = [
        "http://e.com/cb | https://e.com/cb | | http instead of https",
        "https://e.com/cb | https://e.com:443/cb | | port 443 removed",
        "https://e.com:443/cb | https://e.com/cb | | port 443 added",
        "http://e.com:80/cb | http://e.com/cb | | port 80 added",
        "https://e.com:8443/cb | https://e.com/cb | 8443 | port 8443 added",
        "https://e.com:8443/cb | https://e.com:9000/cb | 1,8443 | port 8443 instead of 9000",
        "https://[::1]:8443/cb | https://[::1]/cb | 8443 | port 8443 added",
        "https://e.com/cb/ | https://e.com/cb | | trailing slash added",
        "https://e.com/cb | https://e.com/cb/ | | trailing slash removed",
        "https://answer.url/ | https://answer.url | | trailing slash added",
        "https://e.com/a%b/é | https://e.com/a%25b/%C3%A9 | | path percent-decoded, as the Go SDK does",
        "https://e.com/cb | https://E.Com/cb | | host lower-cased",
        "https://e.com/cb | https://user:pw@e.com/cb | | user info removed",
        "http://e.com/cb | https://e.com:8443/cb | | http instead of https, and port 8443 removed",
    ];
    for case in cases {
        let [signed, seen, ports, variant] = case.split('|').map(str::trim).collect::<Vec<_>>()[..]
        else {
            panic!("bad case {case}")
        };
        let ports: Vec<u16> = ports.split(',').filter_map(|p| p.parse().ok()).collect();
        let nm = near_miss_for(signed, seen, &ports).unwrap_or_else(|| panic!("{case}"));
        assert_eq!(
            (nm.variant.as_str(), nm.url.as_str()),
            (variant, signed),
            "{seen}"
        );
        assert_eq!(
            (nm.key.as_str(), nm.form),
            ("auth token #2 (TEST…XYZ)", Form::Docs)
        );
        let sentence = format!("Would be valid if Vobiz had called {signed} ({variant})");
        assert_eq!(nm.sentence, sentence);
    }
    assert_eq!(
        near_miss_for("https://e.com/cb", "https://e.com/other", &[]),
        None
    );
    let not_offered = near_miss_for("https://e.com:8443/cb", "https://e.com/cb", &[]);
    assert_eq!(not_offered, None, "port 8443 not offered");
}

#[test]
fn query_kept_is_found() {
    let mac = |msg: String| {
        let mut mac = Hmac::<Sha256>::new_from_slice(T.as_bytes()).expect("hmac");
        mac.update(msg.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    };
    // V2 over the URL *with* its query: only the near-miss search can find it.
    let sig = mac(format!("https://e.com/cb?b=2&a=1{N}"));
    let verdict = post(
        "https://e.com/cb?b=2&a=1#f",
        "",
        &[(V2, &sig), (V2N, N)],
        &keys(&[T], &[]),
    );
    let nm = verdict.would_match.expect("explained");
    assert_eq!(
        (nm.variant.as_str(), nm.url.as_str()),
        ("query kept", "https://e.com/cb?b=2&a=1")
    );
    assert!(nm
        .sentence
        .starts_with("Would be valid if the signed URL kept its query string"));
    // V3 over the URL with its (sorted) query is the SDK form of a bodiless POST: valid.
    let sig = mac(format!("https://e.com/cb?a=1&b=2.{N}"));
    let verdict = post(
        "https://e.com/cb?b=2&a=1",
        "",
        &[(V3, &sig), (V3N, N)],
        &keys(&[T], &[]),
    );
    assert_eq!(
        (verdict.status, verdict.form),
        (VerdictStatus::Valid, Some(Form::Sdk))
    );
    assert!(verdict.explanation[1].contains("Python SDK V3 form"));
}

#[test]
fn main_and_sub_tokens_mixed_up_are_explained() {
    let url = "https://e.com/cb";
    let (t, pt) = (AuthToken::new(T), AuthToken::new(PT));
    let (v3, ma3) = (sign_v3_docs(&t, url, N), sign_v3_docs(&pt, url, N));
    let verdict = post(
        url,
        "",
        &[(V3, &v3), (MA3, &ma3), (V3N, N)],
        &keys(&[PT], &[T]),
    );
    assert_eq!(
        (verdict.status, verdict.scheme),
        (VerdictStatus::Invalid, Some(Scheme::V3))
    );
    let nm = verdict.would_match.expect("explained");
    assert_eq!(nm.variant, "main and sub-account tokens mixed up");
    assert_eq!(
        (nm.header.as_str(), nm.key.as_str()),
        (V3, "main auth token (TEST…XYZ)")
    );
    assert!(nm
        .sentence
        .contains("configured as the auth token (--auth-token)"));

    // Only an MA header, verifying with what was configured as the auth token.
    let verdict = post(
        url,
        "",
        &[(MA2, &sign_v2(&pt, url, N)), (V2N, N)],
        &keys(&[PT], &[T]),
    );
    let nm = verdict.would_match.expect("explained");
    assert_eq!(
        (nm.header.as_str(), nm.key.as_str()),
        (MA2, "auth token #1 (PARE…qpo)")
    );
    assert!(nm.sentence.contains("--main-auth-token"), "{}", nm.sentence);
}

#[test]
fn unsigned_unchecked_and_malformed() {
    let (url, k) = ("https://e.com/cb", keys(&[T], &[]));
    let verdict = post(url, "", &[("User-Agent", "Vobiz")], &k);
    assert_eq!(verdict.status, VerdictStatus::Unsigned);
    assert_eq!(verdict.summary(), "unsigned (no signature headers)");
    assert!(verdict
        .explanation
        .iter()
        .any(|e| e.contains("auth credentials configured")));

    let v1 = sign_v1(&AuthToken::new(T), url, &[("a".into(), "1".into())]);
    let verdict = post(url, "a=1", &[("X-Vobiz-Signature", &v1)], &k);
    assert_eq!(verdict.status, VerdictStatus::Unsigned);
    assert_eq!(verdict.checks[0].result, CheckResult::Informational);
    assert!(
        verdict.checks[0].attempts[0].matched,
        "V1 computed in the Go/Node form"
    );

    let verdict = post(url, "", &[(V3, "c2ln"), (V3N, N)], &Keys::default());
    assert_eq!(
        (verdict.status, verdict.nonce.as_deref()),
        (VerdictStatus::Unchecked, Some(N))
    );
    for hint in [
        "--auth-token",
        "VOBIZ_AUTH_TOKEN",
        "--main-auth-token",
        "VOBIZ_MAIN_AUTH_TOKEN",
    ] {
        assert!(verdict.explanation[0].contains(hint), "{hint}");
    }
    let ma_only = post(url, "", &[(MA3, "c2ln"), (V3N, N)], &k);
    assert_eq!(ma_only.status, VerdictStatus::Unchecked);

    let no_nonce = post(url, "", &[(V3, "c2ln")], &k);
    assert_eq!(no_nonce.status, VerdictStatus::Invalid);
    assert_eq!(no_nonce.checks[0].result, CheckResult::Malformed);
    let summary = format!("invalid: {V3} has no {V3N} header to go with it");
    assert_eq!(no_nonce.summary(), summary);
    let empty = post(url, "", &[(V3, " "), (V3N, N)], &k);
    assert_eq!(empty.checks[0].result, CheckResult::Malformed);
    assert!(empty.explanation.contains(&format!("{V3} is empty.")));
}

#[test]
fn verdicts_never_contain_a_token() {
    let url = "https://e.com/cb";
    let (t, pt) = (AuthToken::new(T), AuthToken::new(PT));
    let signing = SigningKeys {
        auth_token: t.clone(),
        main_auth_token: Some(pt.clone()),
    };
    let all = signed_headers("POST", url, b"a=1", &signing, Form::Sdk);
    let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let swapped = sign_v2(&t, url, N);
    let swapped = [(V3, swapped.as_str()), (V3N, N)];
    let requests = [
        (url, &all[..], keys(&[T], &[PT])),
        ("http://e.com/cb", &all, keys(&[T], &[PT])),
        (url, &all, keys(&[PT], &[T])),
        (url, &all, keys(&["wrong"], &["wrong too"])),
        (url, &all, Keys::default()),
        (url, &swapped, keys(&[T], &[])),
    ];
    for (seen, hs, k) in requests {
        let verdict = post(seen, "a=1", hs, &k);
        let json = serde_json::to_string(&verdict).expect("json");
        let text = format!("{verdict:?}\n{verdict:#?}\n{json}\n{}", verdict.summary());
        for secret in [T, PT] {
            assert!(!text.contains(secret), "token leaked in {text}");
        }
        let back: Verdict = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, verdict);
    }
    let shown = format!("{t:?} {t} {:?}", keys(&[T], &[PT]));
    assert_eq!(shown.matches("TEST…XYZ").count(), 3, "{shown}");
}
