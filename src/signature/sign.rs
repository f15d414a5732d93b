//! Signing callbacks the way Vobiz does, for replaying a recorded callback or triggering a
//! synthetic one against a dev server.
//!
//! Every function here is built on the same string-to-sign code as verification
//! (`algorithm`), so whatever we sign, [`super::verify`] accepts.

use rand::Rng;

use super::algorithm::{self, Params};
use super::{AuthToken, Form, Scheme};

/// Tokens used to sign replayed or triggered callbacks.
#[derive(Clone, Debug)]
pub struct SigningKeys {
    /// Signs V1, V2 and V3 (the token of the account that owns the call).
    pub auth_token: AuthToken,
    /// If set, also emit `X-Vobiz-Signature-MA-V2`/`-MA-V3` keyed with it.
    pub main_auth_token: Option<AuthToken>,
}

impl SigningKeys {
    /// Keys with only an auth token (no `-MA-` headers).
    pub fn new(auth_token: AuthToken) -> Self {
        Self {
            auth_token,
            main_auth_token: None,
        }
    }
}

fn key(token: &AuthToken) -> &[u8] {
    token.expose().as_bytes()
}

/// Legacy V1 (Go/Node SDK form): `base64(HMAC-SHA1(token, url + concat(sorted key+value)))`.
/// `url` is used as given (query included); `params` are the POST fields.
pub fn sign_v1(token: &AuthToken, url: &str, params: &[(String, String)]) -> String {
    let params = algorithm::group(params.iter().cloned());
    algorithm::hmac_sha1_b64(key(token), &algorithm::v1_string(url, &params))
}

/// V2: `base64(HMAC-SHA256(token, base + nonce))`, `base` = `url` without query/fragment.
pub fn sign_v2(token: &AuthToken, url: &str, nonce: &str) -> String {
    let base = algorithm::split_url(url).0;
    algorithm::hmac_sha256_b64(key(token), &algorithm::v2_string(base, nonce))
}

/// V3, documented form: `base64(HMAC-SHA256(token, base + "." + nonce))`.
pub fn sign_v3_docs(token: &AuthToken, url: &str, nonce: &str) -> String {
    let base = algorithm::split_url(url).0;
    algorithm::hmac_sha256_b64(key(token), &algorithm::v3_docs_string(base, nonce))
}

/// V3, Python SDK form (sorted query and POST params signed too, spec §2.3). `params` are
/// the form fields; a repeated key is a list. `None` unless `method` is GET or POST.
pub fn sign_v3_sdk(
    token: &AuthToken,
    method: &str,
    url: &str,
    params: &[(String, String)],
    nonce: &str,
) -> Option<String> {
    let params = algorithm::group(params.iter().cloned());
    sdk(token, method, url, &params, nonce)
}

fn sdk(token: &AuthToken, method: &str, url: &str, params: &Params, nonce: &str) -> Option<String> {
    let sts = algorithm::v3_sdk_string(method, url, params, nonce)?;
    Some(algorithm::hmac_sha256_b64(key(token), &sts))
}

/// A fresh nonce like Vobiz's: 20 random decimal digits.
pub fn fresh_nonce() -> String {
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// The Vobiz signature headers for a callback, with fresh (distinct) V2 and V3 nonces.
/// See [`signed_headers_with_nonces`].
pub fn signed_headers(
    method: &str,
    url: &str,
    body: &[u8],
    keys: &SigningKeys,
    v3_form: Form,
) -> Vec<(String, String)> {
    let nonce_v2 = fresh_nonce();
    // Vobiz's two nonces differ in every capture; 10^-20 collision odds, but be exact.
    let mut nonce_v3 = fresh_nonce();
    while nonce_v3 == nonce_v2 {
        nonce_v3 = fresh_nonce();
    }
    signed_headers_with_nonces(method, url, body, keys, v3_form, &nonce_v2, &nonce_v3)
}

/// The Vobiz signature headers for a callback with the given nonces: `X-Vobiz-Signature`
/// (V1), `-V2`, `-V2-Nonce`, `-V3`, `-V3-Nonce`, and with a main token `-MA-V2`/`-MA-V3`
/// (reusing the V2/V3 nonces). `body` is form-decoded for V1 (POST only) and the SDK form.
/// `Form::Sdk` with a method other than GET/POST falls back to the docs form, since the SDK
/// form is undefined there.
pub fn signed_headers_with_nonces(
    method: &str,
    url: &str,
    body: &[u8],
    keys: &SigningKeys,
    v3_form: Form,
    nonce_v2: &str,
    nonce_v3: &str,
) -> Vec<(String, String)> {
    let params = algorithm::parse_form(body);
    let v1_params = match method.eq_ignore_ascii_case("POST") {
        true => params.clone(),
        false => Params::new(),
    };
    let v3 = |t: &AuthToken| match v3_form {
        Form::Sdk => {
            sdk(t, method, url, &params, nonce_v3).unwrap_or_else(|| sign_v3_docs(t, url, nonce_v3))
        }
        Form::Docs => sign_v3_docs(t, url, nonce_v3),
    };
    let v1 = algorithm::hmac_sha1_b64(
        key(&keys.auth_token),
        &algorithm::v1_string(url, &v1_params),
    );
    let mut h = vec![
        (Scheme::V1.header_name(), v1),
        (
            Scheme::V2.header_name(),
            sign_v2(&keys.auth_token, url, nonce_v2),
        ),
        ("X-Vobiz-Signature-V2-Nonce", nonce_v2.to_owned()),
        (Scheme::V3.header_name(), v3(&keys.auth_token)),
        ("X-Vobiz-Signature-V3-Nonce", nonce_v3.to_owned()),
    ];
    if let Some(main) = &keys.main_auth_token {
        h.push((Scheme::MaV2.header_name(), sign_v2(main, url, nonce_v2)));
        h.push((Scheme::MaV3.header_name(), v3(main)));
    }
    h.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{verify, CallbackRequest, CheckResult, Keys, VerdictStatus};
    use super::*;

    const T: &str = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
    const PT: &str = "PARENTtokenNOTreal9876543210zyxwvutsrqpo";
    const N: &str = "12345678901234567890";

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fresh_nonces_are_20_digits_and_vary() {
        let a = fresh_nonce();
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert!((0..5).map(|_| fresh_nonce()).any(|b| b != a));
    }

    #[test]
    fn known_answers() {
        let t = AuthToken::new(T);
        assert_eq!(
            sign_v2(&t, "https://example.com/vobiz/answer?x=1#f", N),
            "Z1BwUQ4s0DURG0MueW91wazQfontsQtTrmpvZv+Gm14="
        );
        assert_eq!(
            sign_v3_docs(&t, "https://example.com/cb", N),
            "io2s62WpNkb+iEwK5KBa7vuRcoDeHYZMSmiLEt8AOMI="
        );
        let digits = pairs(&[
            ("Digits", "9"),
            ("A", "x"),
            ("Digits", "10"),
            ("Digits", "1"),
        ]);
        let sdk = sign_v3_sdk(&t, "POST", "https://example.com/cb", &digits, N);
        assert_eq!(
            sdk.as_deref(),
            Some("kXzWrEAQE8SrdKmLbu2vDqZeax5p2KIuaUv/SAMKyd4=")
        );
        assert_eq!(
            sign_v3_sdk(&t, "PUT", "https://example.com/cb", &[], N),
            None
        );
        // V1 is HMAC-SHA1: 28 base64 characters.
        assert_eq!(sign_v1(&t, "https://example.com/cb", &digits).len(), 28);
    }

    #[test]
    fn headers_without_and_with_main_token() {
        let keys = SigningKeys::new(AuthToken::new(T));
        let h = signed_headers("POST", "https://e.com/cb", b"a=1", &keys, Form::Docs);
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "X-Vobiz-Signature",
                "X-Vobiz-Signature-V2",
                "X-Vobiz-Signature-V2-Nonce",
                "X-Vobiz-Signature-V3",
                "X-Vobiz-Signature-V3-Nonce"
            ]
        );
        assert_ne!(h[2].1, h[4].1, "V2 and V3 nonces differ");

        let keys = SigningKeys {
            main_auth_token: Some(AuthToken::new(PT)),
            ..keys
        };
        let h = signed_headers_with_nonces(
            "POST",
            "https://e.com/cb",
            b"",
            &keys,
            Form::Docs,
            "1",
            "2",
        );
        assert_eq!(h.len(), 7);
        let pt = AuthToken::new(PT);
        assert_eq!(
            h[5],
            (
                "X-Vobiz-Signature-MA-V2".into(),
                sign_v2(&pt, "https://e.com/cb", "1")
            )
        );
        assert_eq!(
            h[6],
            (
                "X-Vobiz-Signature-MA-V3".into(),
                sign_v3_docs(&pt, "https://e.com/cb", "2")
            )
        );
    }

    #[test]
    fn sdk_form_headers_and_fallback() {
        let keys = SigningKeys::new(AuthToken::new(T));
        let t = &keys.auth_token;
        let h = signed_headers_with_nonces(
            "POST",
            "https://e.com/cb",
            b"b=2&a=1",
            &keys,
            Form::Sdk,
            "1",
            N,
        );
        let sdk = sign_v3_sdk(
            t,
            "POST",
            "https://e.com/cb",
            &pairs(&[("a", "1"), ("b", "2")]),
            N,
        );
        assert_eq!(Some(&h[3].1), sdk.as_ref());
        assert_eq!(
            h[0].1,
            sign_v1(t, "https://e.com/cb", &pairs(&[("b", "2"), ("a", "1")]))
        );
        let put =
            signed_headers_with_nonces("PUT", "https://e.com/cb", b"a=1", &keys, Form::Sdk, "1", N);
        assert_eq!(put[3].1, sign_v3_docs(t, "https://e.com/cb", N));
    }

    #[test]
    fn signed_headers_verify() {
        let keys = SigningKeys {
            auth_token: AuthToken::new(T),
            main_auth_token: Some(AuthToken::new(PT)),
        };
        for form in [Form::Docs, Form::Sdk] {
            let h = signed_headers("POST", "https://e.com/cb?x=1", b"Event=Hangup", &keys, form);
            let req = CallbackRequest {
                method: "POST",
                url: "https://e.com/cb?x=1",
                headers: &h,
                body: b"Event=Hangup",
                extra_ports: &[],
                other_urls: &[],
            };
            let only_main = Keys {
                auth_tokens: vec![],
                main_auth_tokens: vec![AuthToken::new(PT)],
            };
            let v = verify(&req, &only_main);
            assert_eq!(
                (v.status, v.form),
                (VerdictStatus::Valid, Some(form)),
                "{v:?}"
            );
            assert_eq!(
                v.checks
                    .iter()
                    .filter(|c| c.result == CheckResult::Valid)
                    .count(),
                2
            );
        }
    }
}
