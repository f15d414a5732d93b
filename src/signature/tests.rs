//! Tests of the module as a whole: token redaction and wire names, `verify()` behaviour
//! across headers, and property tests through the public API — whatever `sign` produces
//! `verify` accepts (random paths, nonces, tokens, form params, GET/POST, both V3 forms, MA
//! headers); any change of URL, nonce, token or a signed param makes it fail; `verify`
//! never panics, whatever arrives. Tests of private helpers live next to them.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const V3: &str = "X-Vobiz-Signature-V3";
const V3N: &str = "X-Vobiz-Signature-V3-Nonce";
const PATH: &str = "(/[A-Za-z0-9._~-]{0,10}){0,4}";
const TOKEN: &str = "[A-Za-z0-9]{8,40}";
const NONCE: &str = "[0-9]{20}";

fn callback<'a>(
    method: &'a str,
    url: &'a str,
    headers: &'a [(String, String)],
    body: &'a [u8],
) -> CallbackRequest<'a> {
    // A port is offered so the near-miss search runs its full variant list.
    let extra_ports = &[8443];
    CallbackRequest {
        method,
        url,
        headers,
        body,
        extra_ports,
        other_urls: &[],
    }
}

fn keys(auth: &[&str], main: &[&str]) -> Keys {
    let t = |v: &[&str]| v.iter().map(|s| AuthToken::new(*s)).collect();
    Keys {
        auth_tokens: t(auth),
        main_auth_tokens: t(main),
    }
}

/// `(method, url, body)` the way Vobiz sends them: params in the query for GET, in the
/// form body for POST.
fn request(
    path: &str,
    params: &BTreeMap<String, String>,
    get: bool,
) -> (&'static str, String, String) {
    let form = serde_urlencoded::to_string(params).unwrap_or_default();
    match get {
        true => (
            "GET",
            format!("https://example.com{path}?{form}"),
            String::new(),
        ),
        false => ("POST", format!("https://example.com{path}"), form),
    }
}

/// Unique keys (so changing one value always changes the SDK string), values with spaces,
/// punctuation and non-ASCII.
fn params() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,7}", "[ -~éन]{0,10}", 1..6)
}

/// The SDK-form V3 signature of a request built by [`request`].
fn sdk_sig(
    t: &AuthToken,
    method: &str,
    url: &str,
    params: &BTreeMap<String, String>,
    nonce: &str,
) -> Option<String> {
    let pairs: Vec<(String, String)> = match method {
        "GET" => Vec::new(),
        _ => params.clone().into_iter().collect(),
    };
    sign_v3_sdk(t, method, url, &pairs, nonce)
}

fn header_name() -> impl Strategy<Value = String> {
    const KNOWN: [&str; 8] = [
        V3,
        V3N,
        "x-vobiz-signature-v2",
        "X-Vobiz-Signature-V2-Nonce",
        "X-VOBIZ-SIGNATURE-MA-V3",
        "X-Vobiz-Signature-MA-V2",
        "X-Vobiz-Signature",
        "Content-Type",
    ];
    prop_oneof![
        prop::sample::select(&KNOWN[..]).prop_map(str::to_owned),
        ".{0,12}"
    ]
}

proptest! {
    #[test]
    fn sign_then_verify(
        token in TOKEN, main in TOKEN, n2 in NONCE, n3 in NONCE, path in PATH,
        params in params(), get: bool, sdk: bool, ma: bool,
    ) {
        let form = if sdk { Form::Sdk } else { Form::Docs };
        let (method, url, body) = request(&path, &params, get);
        let main_auth_token = ma.then(|| AuthToken::new(&main));
        let signing = SigningKeys { auth_token: AuthToken::new(&token), main_auth_token };
        let headers =
            signed_headers_with_nonces(method, &url, body.as_bytes(), &signing, form, &n2, &n3);
        let req = callback(method, &url, &headers, body.as_bytes());

        // When only the URL is signed the SDK string equals the docs one; docs is reported.
        let docs = sign_v3_docs(&signing.auth_token, &url, &n3);
        let same = sdk_sig(&signing.auth_token, method, &url, &params, &n3) == Some(docs);
        let expect_form = if same { Form::Docs } else { form };
        let v = verify(&req, &keys(&[&token], &[]));
        prop_assert_eq!(v.status, VerdictStatus::Valid);
        prop_assert_eq!((v.scheme, v.form), (Some(Scheme::V3), Some(expect_form)));
        prop_assert_eq!(v.nonce, Some(n3));
        let decisive = v.checks.iter().filter(|c| c.scheme != Scheme::V1);
        let ok = [CheckResult::Valid, CheckResult::Unchecked];
        prop_assert!(decisive.clone().all(|c| ok.contains(&c.result)));
        prop_assert!(v.would_match.is_none());
        if ma {
            let v = verify(&req, &keys(&[], &[&main]));
            prop_assert_eq!((v.status, v.scheme), (VerdictStatus::Valid, Some(Scheme::MaV3)));
        }
    }

    #[test]
    fn any_change_fails(
        token in TOKEN, other in TOKEN, nonce in NONCE, path in PATH,
        mut params in params(), get: bool, sdk: bool, change in 0..4u8,
    ) {
        let reversed: String = nonce.chars().rev().collect();
        // Params are only signed in the SDK form; a palindrome nonce cannot be "changed".
        prop_assume!(other != token && (sdk || change != 3) && (change != 1 || reversed != nonce));
        let (method, mut url, mut body) = request(&path, &params, get);
        let t = AuthToken::new(&token);
        let value = match sdk {
            true => sdk_sig(&t, method, &url, &params, &nonce).unwrap_or_default(),
            false => sign_v3_docs(&t, &url, &nonce),
        };
        let (mut nonce, mut k) = (nonce, keys(&[&token], &[]));
        match change {
            0 => (_, url, _) = request(&format!("{path}/x"), &params, get),
            1 => nonce = reversed,
            2 => k = keys(&[&other], &[]),
            _ => {
                if let Some(v) = params.values_mut().next() {
                    v.push('Z');
                }
                (_, url, body) = request(&path, &params, get);
            }
        }
        let headers = vec![(V3.to_owned(), value), (V3N.to_owned(), nonce)];
        let v = verify(&callback(method, &url, &headers, body.as_bytes()), &k);
        prop_assert_eq!(v.status, VerdictStatus::Invalid, "{:?}", v);
    }

    #[test]
    fn headers_verification_never_reads_change_nothing(
        token in TOKEN, other in TOKEN, n2 in NONCE, n3 in NONCE, path in PATH,
        params in params(), get: bool, sdk: bool, kept in prop::collection::vec(any::<bool>(), 5),
        extra in prop::collection::vec((header_name(), ".{0,30}"), 0..8),
    ) {
        // The proxy verifies (and stores the verdict) with only the headers `reads_header`
        // names: valid, invalid and unsigned requests must come out exactly as with all.
        let (method, url, body) = request(&path, &params, get);
        let form = if sdk { Form::Sdk } else { Form::Docs };
        let signing = SigningKeys { auth_token: AuthToken::new(&token), main_auth_token: None };
        let signed =
            signed_headers_with_nonces(method, &url, body.as_bytes(), &signing, form, &n2, &n3);
        let mut headers: Vec<(String, String)> = signed
            .into_iter()
            .zip(kept.iter().cycle())
            .filter_map(|(header, kept)| kept.then_some(header))
            .collect();
        headers.extend(extra);
        let read: Vec<(String, String)> =
            headers.iter().filter(|(name, _)| reads_header(name)).cloned().collect();
        for k in [keys(&[&token], &[]), keys(&[&other], &[&token])] {
            let all = verify(&callback(method, &url, &headers, body.as_bytes()), &k);
            let some = verify(&callback(method, &url, &read, body.as_bytes()), &k);
            prop_assert_eq!(&all, &some);
            let stored_with = |headers: &[(String, String)]| {
                stored::to_stored_json(&all, &stored::Received { headers, url: &url })
            };
            prop_assert_eq!(stored_with(&headers), stored_with(&read));
        }
    }

    #[test]
    fn redaction_never_reveals_more_than_half(s in ".{0,60}") {
        let r = AuthToken::new(s.as_str()).redacted();
        let shown = r.chars().filter(|c| *c != '…').count();
        prop_assert!(r == "(empty)" || shown <= s.chars().count() / 2);
        prop_assert!(s.chars().count() < 2 || !r.contains(s.as_str()));
    }

    #[test]
    fn verify_never_panics(
        method in prop_oneof![Just("POST".to_owned()), Just("get".to_owned()), ".{0,6}"],
        url in prop_oneof![
            ".{0,60}",
            "(https?|HTTP)://([^/?#@]{0,6}@)?(\\[[0-9a-f:]{0,8}\\]|[^/?#:]{0,12})(:[0-9]{0,6})?\
             (/[^?#]{0,16})?(\\?[^#]{0,16})?(#.{0,4})?",
        ],
        headers in prop::collection::vec((header_name(), ".{0,50}"), 0..10),
        body in prop::collection::vec(any::<u8>(), 0..120),
        ports in prop::collection::vec(any::<u16>(), 0..20),
        other in ".{0,60}",
    ) {
        let (method, url) = (method.as_str(), url.as_str());
        let (headers, body, extra_ports) = (&headers[..], &body[..], &ports[..]);
        let shown = other.clone();
        let other_urls = &[super::OtherUrl { url: other, shown, what: "w".into(), advice: "a".into() }];
        let req = CallbackRequest { method, url, headers, body, extra_ports, other_urls };
        let k = keys(&["TESTAUTHTOKENnotReal0123456789abcdefXYZ", "x"], &["PARENTtoken0987654321"]);
        let v = verify(&req, &k);
        let _ = (v.summary(), serde_json::to_string(&v));
        let _ = verify(&req, &Keys::default()).summary();
    }
}

// ---- unit tests of the public types and of verify() ----

#[test]
fn redaction_shows_at_most_half() {
    let r = |s: &str| AuthToken::new(s).redacted();
    assert_eq!(r("TESTAUTHTOKENnotReal0123456789abcdefXYZ"), "TEST…XYZ");
    assert_eq!(r("PARENTtokenNOTreal9876543210zyxwvutsrqpo"), "PARE…qpo");
    assert_eq!(r("my_auth_token"), "my_…ken");
    assert_eq!(
        (r("abcd"), r("ab"), r("a"), r("")),
        ("a…d".into(), "a…".into(), "…".into(), "(empty)".into())
    );
    assert_eq!(r("éàüöñ"), "é…ñ");
    let t = AuthToken::new("TESTAUTHTOKENnotReal0123456789abcdefXYZ");
    assert_eq!(
        (format!("{t}"), format!("{t:?}")),
        ("TEST…XYZ".into(), "AuthToken(TEST…XYZ)".into())
    );
}

#[test]
fn reads_header_names_the_vobiz_headers_and_content_type() {
    let read = [
        "X-Vobiz-Signature-V3",
        "x-vobiz-signature-ma-v2",
        "X-VOBIZ-SIGNATURE",
        "Content-Type",
        "content-type",
    ];
    for name in read {
        assert!(reads_header(name), "{name}");
    }
    // Byte slicing, not char slicing: a multi-byte name across the prefix does not panic.
    let unread = [
        "",
        "x-vobiz",
        "x-vobiz\u{e9}-v3",
        "\u{e9}-vobiz-signature",
        "Host",
    ];
    for name in unread
        .into_iter()
        .chain(["X-Forwarded-For", "Content-Length"])
    {
        assert!(!reads_header(name), "{name}");
    }
}

#[test]
fn names_and_serde_forms() {
    let json = serde_json::to_string(&(
        Scheme::MaV3,
        Scheme::V2,
        VerdictStatus::Unchecked,
        Form::Sdk,
        CheckResult::Informational,
    ));
    assert_eq!(
        json.ok().as_deref(),
        Some(r#"["MA-V3","V2","unchecked","sdk","informational"]"#)
    );
    let names: Vec<_> = [
        Scheme::V1,
        Scheme::V2,
        Scheme::V3,
        Scheme::MaV2,
        Scheme::MaV3,
    ]
    .iter()
    .map(|s| (s.as_str(), s.header_name()))
    .collect();
    assert_eq!(names[3], ("MA-V2", "X-Vobiz-Signature-MA-V2"));
    assert_eq!(names[0], ("V1", "X-Vobiz-Signature"));
    assert_eq!(
        Scheme::MaV3.nonce_header(),
        Some("X-Vobiz-Signature-V3-Nonce")
    );
    assert_eq!(VerdictStatus::Valid.as_str(), "valid");
    assert!(Keys::default().is_empty());
}

/// `verify()` across several headers, keys and bodies.
mod verify_behaviour {
    use super::*;

    const T: &str = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
    const URL: &str = "https://e.com/cb?a=1";
    const N: &str = "12345678901234567890";
    const NOPE: &str = "bm9wZQ==";
    const V2: &str = "X-Vobiz-Signature-V2";
    const V2N: &str = "X-Vobiz-Signature-V2-Nonce";
    const MA3: &str = "X-Vobiz-Signature-MA-V3";
    const CT: &str = "Content-Type";

    fn run(hs: &[(&str, &str)], body: &[u8], auth: &[&str]) -> Verdict {
        let headers: Vec<(String, String)> = hs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let auth_tokens = auth.iter().map(|t| AuthToken::new(*t)).collect();
        let keys = Keys {
            auth_tokens,
            ..Keys::default()
        };
        let req = CallbackRequest {
            method: "POST",
            url: URL,
            headers: &headers,
            body,
            extra_ports: &[],
            other_urls: &[],
        };
        verify(&req, &keys)
    }

    #[test]
    fn a_value_that_cannot_be_a_digest_says_what_it_holds() {
        let sig = sign_v3_docs(&AuthToken::new(T), URL, N);
        let hex = "ab".repeat(32);
        let unpadded = sig.trim_end_matches('=').to_owned();
        let url_safe = sig.replace('+', "-").replace('/', "_");
        let url_safe = match url_safe == sig {
            // A digest with neither '+' nor '/' has no URL-safe form: make one.
            true => format!("-{}", &sig[1..]),
            false => url_safe,
        };
        let cases = [
            (hex.as_str(), "64 hex digits (a hex digest)"),
            (
                unpadded.as_str(),
                "43 characters: its '=' padding is missing",
            ),
            (
                url_safe.as_str(),
                "URL-safe base64 ('-', '_'), not the standard alphabet",
            ),
            ("!!!notbase64$$$", "15 characters, not base64"),
            // Standard base64 of the right length, but no '=' at the end: not URL-safe.
            (
                &"A".repeat(44),
                "44 characters of base64, where an HMAC-SHA256 is 43 and a '='",
            ),
        ];
        for (value, holds) in cases {
            let v = run(&[(V3, value), (V3N, N)], b"", &[T]);
            assert_eq!(v.status, VerdictStatus::Invalid, "{value}");
            let sentence = format!(
                "{V3} is not a base64 HMAC-SHA256 (44 characters ending in '='): it holds {holds}."
            );
            assert!(
                v.explanation.contains(&sentence),
                "{value}: {:?}",
                v.explanation
            );
        }
        // One member of the right shape in a list: no word about shapes.
        let wrong = sign_v3_docs(&AuthToken::new("other"), URL, N);
        let v = run(&[(V3, &format!("abc,{wrong}")), (V3N, N)], b"", &[T]);
        assert!(
            !v.explanation.iter().any(|e| e.contains("HMAC-SHA256 (44")),
            "{:?}",
            v.explanation
        );
    }

    #[test]
    fn other_vobiz_products_signatures_are_named_not_called_legacy() {
        let digest = "0f".repeat(32);
        let kyc = format!("sha256={digest}");
        for (value, product) in [
            (kyc.as_str(), "a KYC webhook's"),
            (digest.as_str(), "a trunk or NDNC"),
        ] {
            let v = run(&[("X-Vobiz-Signature", value)], b"{}", &[T]);
            assert_eq!(v.status, VerdictStatus::Unsigned);
            let first = &v.explanation[0];
            assert!(first.starts_with("X-Vobiz-Signature holds "), "{first}");
            assert!(first.contains(product), "{first}");
            assert_eq!(v.summary(), "unsigned (another Vobiz product's signature)");
            assert!(
                !v.explanation.iter().any(|e| e.contains("legacy")),
                "{:?}",
                v.explanation
            );
        }
        // The real V1 shape is still the legacy header.
        let v = run(
            &[("X-Vobiz-Signature", "c2hhMS1iYXNlNjQtMjgtY2hhcnM=")],
            b"",
            &[T],
        );
        assert!(v.explanation[0].contains("legacy"), "{:?}", v.explanation);
        assert_eq!(v.summary(), "unsigned (legacy V1 signature only)");
    }

    #[test]
    fn strongest_valid_header_decides_and_others_are_noted() {
        let sig = sign_v3_docs(&AuthToken::new(T), URL, N);
        let v = run(
            &[(V3, NOPE), (&V3N.to_lowercase(), N), (V2, NOPE), (V2N, N)],
            b"",
            &[T],
        );
        assert_eq!(
            (v.status, v.scheme),
            (VerdictStatus::Invalid, Some(Scheme::V3))
        );
        // Repeated headers are one list (RFC 9110), so a valid second V3 header counts.
        let hs = [
            (V3, NOPE),
            (V3, &sig),
            (V3N, N),
            (V2, NOPE),
            (V2N, N),
            (MA3, &sig),
        ];
        let v = run(&hs, b"", &[T]);
        assert_eq!(
            (v.status, v.scheme),
            (VerdictStatus::Valid, Some(Scheme::V3))
        );
        assert_eq!(v.signature.as_deref(), Some(sig.as_str()));
        let misshapen = format!(
            "{V2} is not a base64 HMAC-SHA256 (44 characters ending in '='): it holds 8 \
             characters of base64, where an HMAC-SHA256 is 43 and a '='."
        );
        assert!(v.explanation.contains(&misshapen), "{:?}", v.explanation);
        let ma = |e: &String| e.contains("MA-V3 not checked") && e.contains("--main-auth-token");
        assert!(v.explanation.iter().any(ma), "{:?}", v.explanation);
        // A digest of the right shape that does not match: it just did not verify.
        let other = sign_v3_docs(&AuthToken::new("another-token"), URL, N);
        let hs = [(V3, sig.as_str()), (V3N, N), (V2, other.as_str()), (V2N, N)];
        let v = run(&hs, b"", &[T]);
        assert!(v.explanation.contains(&format!("{V2} did not verify.")));
    }

    #[test]
    fn sdk_form_uses_body_only_when_it_is_a_form() {
        // The SDK would get no params from a JSON body (request.form is empty).
        let sig = sign_v3_sdk(&AuthToken::new(T), "POST", URL, &[], N).unwrap_or_default();
        let json = run(
            &[(V3, &sig), (V3N, N), (CT, "application/json")],
            b"{\"x\":1}",
            &[T],
        );
        assert_eq!(json.form, Some(Form::Sdk));
        assert_eq!(
            run(&[(V3, &sig), (V3N, N)], b"{\"x\":1}", &[T]).status,
            VerdictStatus::Invalid
        );
        let form = (CT, "Application/X-WWW-Form-Urlencoded; charset=utf-8");
        assert_eq!(
            run(&[(V3, &sig), (V3N, N), form], b"", &[T]).status,
            VerdictStatus::Valid
        );
    }
}

#[test]
fn an_invalid_callback_is_never_told_the_signature_it_should_have_sent() {
    let token = AuthToken::new("TESTAUTHTOKENnotReal0123456789abcdefXYZ");
    let url = "https://example.com/cb";
    let nonce = "12345678901234567890";
    let real_v3 = sign::sign_v3_docs(&token, url, nonce);
    let real_v2 = sign::sign_v2(&token, url, nonce);
    let headers: Vec<(String, String)> = [
        (V3, "AAAA"),
        (V3N, nonce),
        ("X-Vobiz-Signature-V2", "BBBB"),
        ("X-Vobiz-Signature-V2-Nonce", nonce),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let keys = keys(&["TESTAUTHTOKENnotReal0123456789abcdefXYZ"], &[]);
    let verdict = verify(&callback("POST", url, &headers, b"a=1"), &keys);
    assert_eq!(verdict.status, VerdictStatus::Invalid);
    let everything = serde_json::to_string(&verdict).unwrap();
    for real in [&real_v3, &real_v2] {
        assert!(!everything.contains(real.as_str()), "{everything}");
        // The start is still there to compare with one's own computation.
        assert!(everything.contains(&format!("{}…", &real[..SIGNATURE_PREFIX_CHARS])));
    }
    // A signature that matched is the received value, whole.
    let signed: Vec<(String, String)> =
        vec![(V3.into(), real_v3.clone()), (V3N.into(), nonce.into())];
    let valid = verify(&callback("POST", url, &signed, b"a=1"), &keys);
    assert_eq!(valid.status, VerdictStatus::Valid);
    assert!(serde_json::to_string(&valid).unwrap().contains(&real_v3));
}

#[test]
fn the_report_says_each_sentence_of_a_failure_once() {
    let headers: Vec<(String, String)> = [(V3, "AAAA"), (V3N, "12345678901234567890")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let keys = keys(&["TESTAUTHTOKENnotReal0123456789abcdefXYZ"], &[]);
    let verdict = verify(
        &callback("POST", "https://example.com/cb", &headers, b"a=1"),
        &keys,
    );
    assert_eq!(verdict.status, VerdictStatus::Invalid);
    assert!(verdict.would_match.is_none(), "{verdict:?}");
    let report = crate::report::verdict_text(&verdict);
    let first = verdict.explanation[0].trim_end_matches('.');
    // The summary lower-cases the sentence's first letter; compare the rest.
    let tail = &first[1..];
    assert_eq!(report.matches(tail).count(), 1, "{report}");
    for sentence in verdict.explanation_beyond_summary() {
        assert!(report.contains(sentence.as_str()), "{report}");
    }
}
