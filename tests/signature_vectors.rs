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
const V3N: &str = "X-Vobiz-Signature-V3-Nonce";
const V2N: &str = "X-Vobiz-Signature-V2-Nonce";

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize, Clone)]
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
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
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

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn keys(auth: &[&str], main: &[&str]) -> Keys {
    let t = |v: &[&str]| v.iter().map(|s| AuthToken::new(*s)).collect();
    Keys {
        auth_tokens: t(auth),
        main_auth_tokens: t(main),
    }
}

fn check(method: &str, url: &str, body: &[u8], headers: &[(String, String)], k: &Keys) -> Verdict {
    check_ports(method, url, body, headers, k, &[])
}

fn check_ports(
    m: &str,
    url: &str,
    body: &[u8],
    headers: &[(String, String)],
    k: &Keys,
    ports: &[u16],
) -> Verdict {
    verify(
        &CallbackRequest {
            method: m,
            url,
            headers,
            body,
            extra_ports: ports,
        },
        k,
    )
}

fn matched(v: &Verdict) -> &Attempt {
    let a = v
        .checks
        .iter()
        .flat_map(|c| &c.attempts)
        .find(|a| a.matched);
    a.expect("a matching attempt")
}

#[test]
fn every_vector_signs_and_verifies() {
    let all = vectors();
    assert_eq!(all.len(), 13, "vector file changed?");
    for v in &all {
        let token = AuthToken::new(v.auth_token.as_str());
        let label = format!("auth token #1 ({})", token.redacted());
        let k = keys(&[&v.auth_token], &[]);
        if v.scheme == "V2" {
            assert_eq!(sign_v2(&token, &v.url, &v.nonce), v.signature, "{}", v.id);
            let hs = h(&[("X-Vobiz-Signature-V2", &v.signature), (V2N, &v.nonce)]);
            let verdict = check("POST", &v.url, b"", &hs, &k);
            assert_eq!(
                verdict.status,
                VerdictStatus::Valid,
                "{}: {verdict:?}",
                v.id
            );
            assert_eq!(
                (verdict.scheme, verdict.form),
                (Some(Scheme::V2), None),
                "{}",
                v.id
            );
            assert_eq!(verdict.key.as_deref(), Some(label.as_str()));
            assert_eq!(verdict.nonce.as_deref(), Some(v.nonce.as_str()));
            assert_eq!(verdict.signature.as_deref(), Some(v.signature.as_str()));
            assert_eq!(
                matched(&verdict).string_to_sign,
                v.string_to_sign,
                "{}",
                v.id
            );
            if v.note.contains("MA-V2") {
                let hs = h(&[("x-vobiz-signature-ma-v2", &v.signature), (V2N, &v.nonce)]);
                let verdict = check("POST", &v.url, b"", &hs, &keys(&[], &[&v.auth_token]));
                assert_eq!(
                    (verdict.status, verdict.scheme),
                    (VerdictStatus::Valid, Some(Scheme::MaV2))
                );
                assert_eq!(
                    verdict.key,
                    Some(format!("main auth token ({})", token.redacted()))
                );
            }
            continue;
        }
        assert_eq!(v.scheme, "V3-sdk", "{}", v.id);
        let params = pairs(&v.params);
        let sdk = sign_v3_sdk(&token, &v.method, &v.url, &params, &v.nonce);
        assert_eq!(sdk.as_deref(), Some(v.signature.as_str()), "{}", v.id);
        let docs = v
            .docs_v3_signature
            .as_deref()
            .expect("docs value for V3 rows");
        assert_eq!(sign_v3_docs(&token, &v.url, &v.nonce), docs, "{}", v.id);

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
        for (value, form) in [(v.signature.as_str(), sdk_form), (docs, Form::Docs)] {
            for (name, k, scheme) in [
                ("X-Vobiz-Signature-V3", &k, Scheme::V3),
                (
                    "X-Vobiz-Signature-MA-V3",
                    &keys(&[], &[&v.auth_token]),
                    Scheme::MaV3,
                ),
            ] {
                let hs = h(&[(name, value), (V3N, &v.nonce)]);
                let verdict = check(&v.method, &v.url, body.as_bytes(), &hs, k);
                assert_eq!(
                    verdict.status,
                    VerdictStatus::Valid,
                    "{} {name}: {verdict:#?}",
                    v.id
                );
                assert_eq!(
                    (verdict.scheme, verdict.form),
                    (Some(scheme), Some(form)),
                    "{}",
                    v.id
                );
                assert_eq!(verdict.signature.as_deref(), Some(value));
                if form == sdk_form {
                    assert_eq!(
                        matched(&verdict).string_to_sign,
                        v.string_to_sign,
                        "{}",
                        v.id
                    );
                }
            }
        }
        let verdict = check(
            &v.method,
            &v.url,
            body.as_bytes(),
            &h(&[("X-Vobiz-Signature-V3", docs), (V3N, &v.nonce)]),
            &k,
        );
        assert_eq!(verdict.summary(), format!("valid (V3, docs form, {label})"));
    }
}

/// V3-02: the 22-field Hangup form, signed in the SDK form.
fn hangup() -> (Vector, Vec<(String, String)>, String) {
    let v = vectors()
        .into_iter()
        .find(|v| v.id == "V3-02")
        .expect("V3-02");
    let params = pairs(&v.params);
    let body = serde_urlencoded::to_string(&params).expect("form");
    (v, params, body)
}

fn v3(value: &str, nonce: &str) -> Vec<(String, String)> {
    h(&[("X-Vobiz-Signature-V3", value), (V3N, nonce)])
}

#[test]
fn tampered_hangup_is_rejected() {
    let (v, _, body) = hangup();
    let (url, body, sig) = (v.url.as_str(), body.as_bytes(), v.signature.as_str());
    let k = keys(&[T], &[]);
    assert_eq!(
        check("POST", url, body, &v3(sig, N), &k).status,
        VerdictStatus::Valid
    );
    assert_eq!(
        check("post", url, body, &v3(sig, N), &k).status,
        VerdictStatus::Valid
    );

    let wrong_token = check(
        "POST",
        url,
        body,
        &v3(sig, N),
        &keys(&["not-the-token-at-all"], &[]),
    );
    assert_eq!(wrong_token.status, VerdictStatus::Invalid);
    assert_eq!(wrong_token.would_match, None);
    assert_eq!(
        check("POST", url, body, &v3(sig, "12345678901234567891"), &k).status,
        VerdictStatus::Invalid
    );

    let changed =
        String::from_utf8_lossy(body).replace("HangupSource=Caller", "HangupSource=Callee");
    assert_ne!(changed.as_bytes(), body);
    let verdict = check("POST", url, changed.as_bytes(), &v3(sig, N), &k);
    assert_eq!(verdict.status, VerdictStatus::Invalid);
    assert!(verdict.checks[0]
        .attempts
        .iter()
        .any(|a| a.form == Form::Sdk && a.string_to_sign.contains("Callee")));
}

#[test]
fn tampered_urls_are_explained() {
    let (v, _, body) = hangup();
    let k = keys(&[T], &[]);
    let cases = [
        ("http://example.com/vobiz/hangup", "https instead of http"),
        ("https://EXAMPLE.COM/vobiz/hangup", "host lower-cased"),
        ("https://example.com:443/vobiz/hangup", "port 443 removed"),
    ];
    for (url, variant) in cases {
        let verdict = check("POST", url, body.as_bytes(), &v3(&v.signature, N), &k);
        assert_eq!(verdict.status, VerdictStatus::Invalid, "{url}");
        let nm = verdict.would_match.as_ref().expect("explained");
        assert_eq!(
            (nm.variant.as_str(), nm.url.as_str(), nm.form),
            (variant, v.url.as_str(), Form::Sdk)
        );
        let sentence = format!(
            "Would be valid if Vobiz had called {} ({variant}, SDK form)",
            v.url
        );
        assert_eq!(nm.sentence, sentence);
        assert_eq!(verdict.explanation[0], sentence, "most important first");
        assert_eq!(
            verdict.summary(),
            format!("invalid: would be valid if Vobiz had called {}", v.url)
        );
        assert_eq!(nm.key, "auth token #1 (TEST…XYZ)");
    }
}

#[test]
fn header_lists_are_trimmed_but_values_are_exact() {
    let (v, _, body) = hangup();
    let k = keys(&[T], &[]);
    for value in [
        format!("AAAA,{}", v.signature),
        format!("AAAA, {}", v.signature),
        format!(" {} ,BBBB", v.signature),
    ] {
        let verdict = check("POST", &v.url, body.as_bytes(), &v3(&value, N), &k);
        assert_eq!(verdict.status, VerdictStatus::Valid, "{value}");
        assert_eq!(verdict.signature.as_deref(), Some(v.signature.as_str()));
    }
    let v2 = sign_v2(&AuthToken::new(T), "https://example.com/vobiz/answer", N);
    for bad in [format!("{v2}\n"), v2.trim_end_matches('=').to_owned()] {
        let hs = h(&[("X-Vobiz-Signature-V2", &bad), (V2N, N)]);
        let verdict = check("POST", "https://example.com/vobiz/answer", b"", &hs, &k);
        assert_eq!(verdict.status, VerdictStatus::Invalid, "{bad:?}");
    }
}

#[test]
fn docs_signature_with_body_verifies_in_docs_form() {
    let (v, _, body) = hangup();
    let docs = v.docs_v3_signature.as_deref().expect("docs");
    let verdict = check(
        "POST",
        &v.url,
        body.as_bytes(),
        &v3(docs, N),
        &keys(&[T], &[]),
    );
    assert_eq!(
        (verdict.status, verdict.form),
        (VerdictStatus::Valid, Some(Form::Docs))
    );
    assert_eq!(
        verdict.checks[0].attempts.len(),
        1,
        "docs form first: one HMAC, no SDK attempt"
    );
}

#[test]
fn swapped_v2_v3_headers_are_explained() {
    let url = "https://example.com/vobiz/hangup";
    let t = AuthToken::new(T);
    let k = keys(&[T], &[]);
    let v2_in_v3 = check("POST", url, b"", &v3(&sign_v2(&t, url, N), N), &k);
    let v3_in_v2 = check(
        "POST",
        url,
        b"",
        &h(&[
            ("X-Vobiz-Signature-V2", &sign_v3_docs(&t, url, N)),
            (V2N, N),
        ]),
        &k,
    );
    for verdict in [v2_in_v3, v3_in_v2] {
        assert_eq!(verdict.status, VerdictStatus::Invalid);
        assert_eq!(
            verdict.would_match.as_ref().map(|m| m.variant.as_str()),
            Some("V2/V3 headers swapped")
        );
        assert!(
            verdict.explanation[0].contains("headers were swapped"),
            "{:?}",
            verdict.explanation
        );
        assert_eq!(
            verdict.summary(),
            "invalid: would be valid if the V2 and V3 headers were swapped"
        );
    }
    // The realistic swap: both signature headers exchanged, nonce headers left in place.
    let (n2, n3) = ("11111111111111111111", "22222222222222222222");
    let hs = h(&[
        ("X-Vobiz-Signature-V2", &sign_v3_docs(&t, url, n3)),
        ("X-Vobiz-Signature-V3", &sign_v2(&t, url, n2)),
        (V2N, n2),
        (V3N, n3),
    ]);
    let verdict = check("POST", url, b"", &hs, &k);
    assert_eq!(
        verdict.would_match.map(|m| m.header),
        Some("X-Vobiz-Signature-V3".to_owned())
    );
}

/// Vobiz signs the docs form over `signed`; we received `seen`.
fn near_miss_for(signed: &str, seen: &str, ports: &[u16]) -> Option<NearMiss> {
    let sig = sign_v3_docs(&AuthToken::new(T), signed, N);
    let verdict = check_ports(
        "POST",
        seen,
        b"a=1",
        &v3(&sig, N),
        &keys(&["other-token-1", T], &[]),
        ports,
    );
    assert_eq!(verdict.status, VerdictStatus::Invalid, "{signed} vs {seen}");
    verdict.would_match
}

#[test]
fn every_url_variant_is_found() {
    let cases: &[(&str, &str, &[u16], &str)] = &[
        (
            "http://e.com/cb",
            "https://e.com/cb",
            &[],
            "http instead of https",
        ),
        (
            "https://e.com/cb",
            "https://e.com:443/cb",
            &[],
            "port 443 removed",
        ),
        (
            "https://e.com:443/cb",
            "https://e.com/cb",
            &[],
            "port 443 added",
        ),
        (
            "http://e.com:80/cb",
            "http://e.com/cb",
            &[],
            "port 80 added",
        ),
        (
            "https://e.com:8443/cb",
            "https://e.com/cb",
            &[8443],
            "port 8443 added",
        ),
        (
            "https://e.com:8443/cb",
            "https://e.com:9000/cb",
            &[1, 8443],
            "port 8443 instead of 9000",
        ),
        (
            "https://[::1]:8443/cb",
            "https://[::1]/cb",
            &[8443],
            "port 8443 added",
        ),
        (
            "https://e.com/cb/",
            "https://e.com/cb",
            &[],
            "trailing slash added",
        ),
        (
            "https://e.com/cb",
            "https://e.com/cb/",
            &[],
            "trailing slash removed",
        ),
        (
            "https://answer.url/",
            "https://answer.url",
            &[],
            "trailing slash added",
        ),
        (
            "https://e.com/a b/é",
            "https://e.com/a%20b/%C3%A9",
            &[],
            "path percent-decoded, as the Go SDK does",
        ),
        (
            "https://e.com/cb",
            "https://E.Com/cb",
            &[],
            "host lower-cased",
        ),
        (
            "https://e.com/cb",
            "https://user:pw@e.com/cb",
            &[],
            "user info removed",
        ),
    ];
    for &(signed, seen, ports, variant) in cases {
        let nm = near_miss_for(signed, seen, ports).unwrap_or_else(|| panic!("{signed} vs {seen}"));
        assert_eq!(
            (nm.variant.as_str(), nm.url.as_str()),
            (variant, signed),
            "{seen}"
        );
        assert_eq!(
            (nm.key.as_str(), nm.form),
            ("auth token #2 (TEST…XYZ)", Form::Docs)
        );
        assert_eq!(
            nm.sentence,
            format!("Would be valid if Vobiz had called {signed} ({variant})")
        );
    }
    assert_eq!(
        near_miss_for("https://e.com/cb", "https://e.com/other", &[]),
        None
    );
    assert_eq!(
        near_miss_for("https://e.com:8443/cb", "https://e.com/cb", &[]),
        None,
        "port not offered"
    );
}

#[test]
fn query_kept_is_found() {
    let mac = |msg: String| {
        let mut mac = Hmac::<Sha256>::new_from_slice(T.as_bytes()).expect("hmac");
        mac.update(msg.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    };
    // V2 over the URL *with* its query: only the near-miss search can find it.
    let hs = h(&[
        (
            "X-Vobiz-Signature-V2",
            &mac(format!("https://e.com/cb?b=2&a=1{N}")),
        ),
        (V2N, N),
    ]);
    let verdict = check(
        "POST",
        "https://e.com/cb?b=2&a=1#f",
        b"",
        &hs,
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
    let hs = v3(&mac(format!("https://e.com/cb?a=1&b=2.{N}")), N);
    let verdict = check(
        "POST",
        "https://e.com/cb?b=2&a=1",
        b"",
        &hs,
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
    let hs = h(&[
        ("X-Vobiz-Signature-V3", &sign_v3_docs(&t, url, N)),
        ("X-Vobiz-Signature-MA-V3", &sign_v3_docs(&pt, url, N)),
        (V3N, N),
    ]);
    let verdict = check("POST", url, b"", &hs, &keys(&[PT], &[T]));
    assert_eq!(verdict.status, VerdictStatus::Invalid);
    let nm = verdict.would_match.expect("explained");
    assert_eq!(nm.variant, "main and sub-account tokens mixed up");
    assert_eq!(
        (nm.header.as_str(), nm.key.as_str()),
        ("X-Vobiz-Signature-V3", "main auth token (TEST…XYZ)")
    );
    assert!(nm
        .sentence
        .contains("configured as the auth token (--auth-token)"));
    assert_eq!(verdict.scheme, Some(Scheme::V3), "strongest header present");

    // Only an MA header, verifying with what was configured as the auth token.
    let hs = h(&[("X-Vobiz-Signature-MA-V2", &sign_v2(&pt, url, N)), (V2N, N)]);
    let verdict = check("POST", url, b"", &hs, &keys(&[PT], &[T]));
    let nm = verdict.would_match.expect("explained");
    assert_eq!(
        (nm.header.as_str(), nm.key.as_str()),
        ("X-Vobiz-Signature-MA-V2", "auth token #1 (PARE…qpo)")
    );
    assert!(nm.sentence.contains("--main-auth-token"), "{}", nm.sentence);
}

#[test]
fn unsigned_unchecked_and_malformed() {
    let url = "https://e.com/cb";
    let k = keys(&[T], &[]);
    let verdict = check("POST", url, b"", &h(&[("User-Agent", "Vobiz")]), &k);
    assert_eq!(
        (verdict.status, verdict.summary().as_str()),
        (VerdictStatus::Unsigned, "unsigned (no signature headers)")
    );
    assert!(verdict
        .explanation
        .iter()
        .any(|e| e.contains("auth credentials configured")));

    let v1 = sign_v1(&AuthToken::new(T), url, &[("a".into(), "1".into())]);
    let verdict = check("POST", url, b"a=1", &h(&[("X-Vobiz-Signature", &v1)]), &k);
    assert_eq!(verdict.status, VerdictStatus::Unsigned);
    assert_eq!(verdict.checks[0].result, CheckResult::Informational);
    assert!(
        verdict.checks[0].attempts[0].matched,
        "V1 computed in the Go/Node form"
    );

    let hs = v3("c2ln", N);
    let verdict = check("POST", url, b"", &hs, &Keys::default());
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
    let ma_only = h(&[("X-Vobiz-Signature-MA-V3", "c2ln"), (V3N, N)]);
    assert_eq!(
        check("POST", url, b"", &ma_only, &k).status,
        VerdictStatus::Unchecked
    );

    let no_nonce = check(
        "POST",
        url,
        b"",
        &h(&[("X-Vobiz-Signature-V3", "c2ln")]),
        &k,
    );
    assert_eq!(
        (no_nonce.status, no_nonce.checks[0].result),
        (VerdictStatus::Invalid, CheckResult::Malformed)
    );
    assert_eq!(
        no_nonce.summary(),
        "invalid: X-Vobiz-Signature-V3 has no X-Vobiz-Signature-V3-Nonce header to go with it"
    );
    let empty = check("POST", url, b"", &v3(" ", N), &k);
    assert_eq!(empty.checks[0].result, CheckResult::Malformed);
    assert!(empty
        .explanation
        .contains(&"X-Vobiz-Signature-V3 is empty.".to_owned()));
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
    let requests = [
        (url, all.clone(), keys(&[T], &[PT])),
        ("http://e.com/cb", all.clone(), keys(&[T], &[PT])),
        (url, all.clone(), keys(&[PT], &[T])),
        (url, all.clone(), keys(&["wrong"], &["wrong too"])),
        (url, all, Keys::default()),
        (url, v3(&sign_v2(&t, url, N), N), keys(&[T], &[])),
    ];
    for (seen, hs, k) in requests {
        let verdict = check("POST", seen, b"a=1", &hs, &k);
        let text = format!(
            "{verdict:?}\n{:#?}\n{}\n{}",
            verdict,
            serde_json::to_string(&verdict).expect("json"),
            verdict.summary()
        );
        for secret in [T, PT] {
            assert!(!text.contains(secret), "token leaked in {text}");
        }
        let back: Verdict = serde_json::from_str(&serde_json::to_string(&verdict).expect("json"))
            .expect("round trip");
        assert_eq!(back, verdict);
    }
    assert_eq!(
        format!("{t:?} {t} {:?}", keys(&[T], &[PT]))
            .matches("TEST…XYZ")
            .count(),
        3
    );
}
