//! The strings Vobiz signs (V1, V2, V3 documented and Python SDK forms) and the checks
//! around them: `signature::signed_headers_with_nonces`, `sign_*` and `verify` on arbitrary
//! methods, URLs, bodies, nonces, tokens and extra headers.
//!
//! Properties: nothing panics; what we sign, `verify` accepts (for every decisive header
//! present, in the form it was signed in); every attempt's `expected` is the HMAC of its
//! `string_to_sign` (computed here independently), and the docs-form strings are the base
//! URL (no query, no fragment) + nonce (V2) or + "." + nonce (V3); a near-miss "would be
//! valid if Vobiz had called URL" verifies when checked against that URL.

#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use vobiz_tunnel::signature::{
    sign_v1, sign_v3_sdk, signed_headers_with_nonces, verify, AuthToken, CallbackRequest,
    CheckResult, Form, Keys, Scheme, SigningKeys, Verdict, VerdictStatus,
};

/// How the URL that was signed differs from the one the request arrived on.
#[derive(Arbitrary, Debug)]
enum Signed {
    Same,
    SchemeSwapped,
    TrailingSlash,
    PortAdded(u16),
    Lowercase,
    Other(String),
}

/// Which token signed.
#[derive(Arbitrary, Debug)]
enum Signer {
    Auth,
    Main,
    Neither(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: String,
    get: bool,
    url: String,
    signed: Signed,
    signer: Signer,
    body: Vec<u8>,
    form_content_type: bool,
    nonce_v2: String,
    nonce_v3: String,
    auth: String,
    main: Option<String>,
    sdk_form: bool,
    /// Drop these headers of the signed set (by index), and add these.
    drop: Vec<u8>,
    extra: Vec<(String, String)>,
    extra_ports: Vec<u16>,
}

fn hmac_b64(key: &str, msg: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(msg.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The documented base: the URL without `?query` and `#fragment`.
fn base(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

fn signed_url(url: &str, how: &Signed) -> String {
    match how {
        Signed::Same => url.to_owned(),
        Signed::SchemeSwapped => match url.strip_prefix("https://") {
            Some(rest) => format!("http://{rest}"),
            None => url.replacen("http://", "https://", 1),
        },
        Signed::TrailingSlash => {
            let b = base(url);
            match b.strip_suffix('/') {
                Some(s) => format!("{s}{}", &url[b.len()..]),
                None => format!("{b}/{}", &url[b.len()..]),
            }
        }
        Signed::PortAdded(port) => match url.split_once("://") {
            Some((scheme, rest)) => {
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                format!("{scheme}://{}:{port}{}", &rest[..end], &rest[end..])
            }
            None => url.to_owned(),
        },
        Signed::Lowercase => url.to_lowercase(),
        Signed::Other(other) => other.clone(),
    }
}

/// Checks every attempt of every header against the independent model.
fn check_attempts(v: &Verdict, url: &str, tokens: &[(String, &str)]) {
    for c in &v.checks {
        for a in &c.attempts {
            let token = tokens
                .iter()
                .find(|(label, _)| *label == a.key)
                .map(|(_, t)| *t);
            let Some(token) = token else {
                panic!("attempt with unknown key label {:?}", a.key);
            };
            if c.scheme != Scheme::V1 {
                assert_eq!(
                    a.expected,
                    hmac_b64(token, &a.string_to_sign),
                    "{} expected",
                    c.header
                );
            }
            let nonce = c.nonce.as_deref().unwrap_or_default();
            if a.form == Form::Docs && c.scheme != Scheme::V1 {
                let sep = if c.scheme.is_v3() { "." } else { "" };
                assert_eq!(
                    a.string_to_sign,
                    format!("{}{sep}{nonce}", base(url)),
                    "{} docs string",
                    c.header
                );
            }
            if a.form == Form::Sdk {
                assert!(c.scheme.is_v3());
                assert!(a.string_to_sign.starts_with(base(url)));
                assert!(a.string_to_sign.ends_with(&format!(".{nonce}")));
            }
        }
    }
}

/// `Some(t)` if `t` survives as a header value unchanged: the tool trims spaces and tabs.
fn header_safe(t: &str) -> bool {
    !t.is_empty() && t.trim_matches([' ', '\t']) == t
}

fuzz_target!(|input: Input| {
    let method = match (input.method.is_empty(), input.get) {
        (true, true) => "GET",
        (true, false) => "POST",
        (false, _) => input.method.as_str(),
    };
    let auth = AuthToken::new(input.auth.clone());
    let main = input.main.clone().map(AuthToken::new);
    let keys = Keys {
        auth_tokens: vec![auth.clone()],
        main_auth_tokens: main.iter().cloned().collect(),
    };
    let signer_token = match &input.signer {
        Signer::Auth => auth.clone(),
        Signer::Main => main.clone().unwrap_or_else(|| auth.clone()),
        Signer::Neither(t) => AuthToken::new(t.clone()),
    };
    let signing = SigningKeys {
        auth_token: signer_token.clone(),
        main_auth_token: main.clone(),
    };
    let form = if input.sdk_form {
        Form::Sdk
    } else {
        Form::Docs
    };
    let signed_for = signed_url(&input.url, &input.signed);
    let mut headers = signed_headers_with_nonces(
        method,
        &signed_for,
        &input.body,
        &signing,
        form,
        &input.nonce_v2,
        &input.nonce_v3,
    );
    if input.form_content_type {
        headers.push((
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
    } else {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    let intact = input.drop.is_empty() && input.extra.is_empty();
    for &i in input.drop.iter().rev() {
        if !headers.is_empty() {
            headers.remove(usize::from(i) % headers.len());
        }
    }
    headers.extend(input.extra.iter().cloned());

    let req = CallbackRequest {
        method,
        url: &input.url,
        headers: &headers,
        body: &input.body,
        extra_ports: &input.extra_ports,
        other_urls: &[],
    };
    let v = verify(&req, &keys);
    let _ = v.summary();
    serde_json::to_string(&v).expect("a verdict serialises");

    // Labels as verify writes them: auth tokens numbered, a lone main token not.
    let mut tokens = vec![(
        format!("auth token #1 ({})", auth.redacted()),
        auth.expose(),
    )];
    if let Some(m) = &main {
        tokens.push((format!("main auth token ({})", m.redacted()), m.expose()));
    }
    check_attempts(&v, &input.url, &tokens);

    // A near miss names a URL under which the same request verifies.
    if let Some(nm) = &v.would_match {
        assert_eq!(v.status, VerdictStatus::Invalid);
        if nm
            .sentence
            .starts_with("Would be valid if Vobiz had called ")
        {
            let again = CallbackRequest {
                url: &nm.url,
                extra_ports: &[],
                other_urls: &[],
                ..req
            };
            let v2 = verify(&again, &keys);
            assert_eq!(v2.status, VerdictStatus::Valid, "near miss {nm:?}: {v2:?}");
        }
    }

    // What we sign, we accept: each decisive header signed with its own kind of token for
    // the URL of the request, with nonces that survive as header values.
    let own_token = matches!(input.signer, Signer::Auth)
        || (matches!(input.signer, Signer::Main) && main.is_none());
    let same_url = signed_for == input.url;
    let nonces_ok = header_safe(&input.nonce_v2) && header_safe(&input.nonce_v3);
    if intact && own_token && same_url && nonces_ok {
        assert_eq!(v.status, VerdictStatus::Valid, "{v:?}");
        let sdk_usable = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("POST");
        for c in &v.checks {
            let fine = match c.scheme {
                Scheme::V1 => true,
                Scheme::V2 | Scheme::MaV2 => c.result == CheckResult::Valid,
                // The SDK form covers the body only when it is (declared) a form.
                _ if form == Form::Sdk && sdk_usable && !input.form_content_type => true,
                _ => c.result == CheckResult::Valid,
            };
            assert!(fine, "{} not valid: {v:?}", c.header);
        }
        if v.scheme == Some(Scheme::V3) && form == Form::Docs {
            assert_eq!(v.form, Some(Form::Docs));
        }
    }

    // The single-signature helpers agree with verify on V3 (SDK) and V1.
    if own_token && same_url && header_safe(&input.nonce_v3) && input.form_content_type {
        let body_fields = form_fields(&input.body);
        if let Some(sig) = sign_v3_sdk(&auth, method, &input.url, &body_fields, &input.nonce_v3) {
            let h = vec![
                (
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
                ("X-Vobiz-Signature-V3".into(), sig),
                ("X-Vobiz-Signature-V3-Nonce".into(), input.nonce_v3.clone()),
            ];
            let only = CallbackRequest { headers: &h, ..req };
            let v3 = verify(&only, &keys);
            assert_eq!(v3.status, VerdictStatus::Valid, "SDK form: {v3:?}");
        }
        let post = method.eq_ignore_ascii_case("POST");
        let v1_fields = if post { body_fields } else { Vec::new() };
        let h = vec![
            (
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            (
                "X-Vobiz-Signature".into(),
                sign_v1(&auth, &input.url, &v1_fields),
            ),
        ];
        let only = CallbackRequest { headers: &h, ..req };
        let v1 = verify(&only, &keys);
        let matched = v1
            .checks
            .iter()
            .any(|c| c.attempts.iter().any(|a| a.matched));
        assert!(matched, "V1: {v1:?}");
    }
});

/// The body's form fields as a framework decodes them (lossy, blank values kept).
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let request = vobiz_tunnel::exchange::RequestRecord {
        headers: vobiz_tunnel::exchange::Headers(vec![(
            "content-type".into(),
            b"application/x-www-form-urlencoded".to_vec(),
        )]),
        body: bytes::Bytes::copy_from_slice(body),
        ..Default::default()
    };
    if body.is_empty() {
        return Vec::new();
    }
    request.form_fields()
}
