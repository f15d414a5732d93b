//! [`verify`]: from a received callback and the configured tokens to a [`Verdict`].
//!
//! Order of work is chosen for the hot path: each decisive header is tried with its keys in
//! the documented form first (one HMAC per key until one matches); the SDK string, the body
//! parse and the near-miss search only happen when that fails.

use std::borrow::Cow;
use std::cell::OnceCell;

use super::algorithm::{self, Params};
use super::{
    explain, Attempt, AuthToken, CallbackRequest, CheckResult, Form, HeaderCheck, Keys, Scheme,
    Verdict, VerdictStatus,
};

/// Where to configure each kind of token, for sentences.
const AUTH_HINT: &str = "--auth-token or VOBIZ_AUTH_TOKEN";
const MAIN_HINT: &str = "--main-auth-token or VOBIZ_MAIN_AUTH_TOKEN";
const UNSIGNED: &str =
    "Vobiz only signs callbacks when the callback URL has auth credentials configured.";
const ONLY_V1: &str = "Only the legacy X-Vobiz-Signature (V1) is present; \
    it is informational, so the callback counts as unsigned.";
const UNCHECKED: &str = "Signature headers are present but no token is configured to check \
    them: pass --auth-token or set VOBIZ_AUTH_TOKEN for V2/V3 headers, \
    --main-auth-token or VOBIZ_MAIN_AUTH_TOKEN for -MA- headers.";
const SDK_FORM: &str = "It was signed in the Python SDK V3 form (sorted query and POST params \
    included), not the documented base URL + \".\" + nonce.";

/// A token with its redacted display label.
pub(super) struct Labeled<'k> {
    pub label: String,
    pub token: &'k AuthToken,
}

/// Per-request state shared by verification and the near-miss search.
pub(super) struct Ctx<'r, 'k> {
    pub req: &'r CallbackRequest<'r>,
    pub auth: Vec<Labeled<'k>>,
    pub main: Vec<Labeled<'k>>,
    /// Body form fields, parsed on first use (the docs form never needs them).
    params: OnceCell<Params>,
}

impl<'r, 'k> Ctx<'r, 'k> {
    fn new(req: &'r CallbackRequest<'r>, keys: &'k Keys) -> Self {
        // Auth tokens are always numbered; a lone main token reads better without "#1".
        let several_main = keys.main_auth_tokens.len() > 1;
        let auth = labeled("auth token", &keys.auth_tokens, true);
        let main = labeled("main auth token", &keys.main_auth_tokens, several_main);
        Ctx {
            req,
            auth,
            main,
            params: OnceCell::new(),
        }
    }

    /// Keys of the kind `scheme` is signed with.
    pub fn keys_for(&self, scheme: Scheme) -> &[Labeled<'k>] {
        if scheme.is_main() {
            &self.main
        } else {
            &self.auth
        }
    }

    /// Body form fields, as a web framework would hand them to the Python SDK: empty unless
    /// the body is (or may be) `application/x-www-form-urlencoded`.
    pub fn params(&self) -> &Params {
        self.params.get_or_init(|| {
            let ct = header(self.req.headers, "content-type")
                .next()
                .unwrap_or_default();
            let is_form = ct.is_empty()
                || ct
                    .to_ascii_lowercase()
                    .contains("application/x-www-form-urlencoded");
            match is_form {
                true => algorithm::parse_form(self.req.body),
                false => Params::new(),
            }
        })
    }

    /// The SDK-form string for `url` (`None` unless the method is GET or POST).
    pub fn sdk_string(&self, url: &str, nonce: &str) -> Option<String> {
        algorithm::v3_sdk_string(self.req.method, url, self.params(), nonce)
    }
}

/// Tokens with labels like `auth token #1 (TEST…XYZ)`.
fn labeled<'k>(kind: &str, tokens: &'k [AuthToken], numbered: bool) -> Vec<Labeled<'k>> {
    let label = |i: usize, t: &AuthToken| match numbered {
        true => format!("{kind} #{} ({})", i + 1, t.shown()),
        false => format!("{kind} ({})", t.shown()),
    };
    let tokens = tokens.iter().enumerate();
    tokens
        .map(|(i, token)| Labeled {
            label: label(i, token),
            token,
        })
        .collect()
}

/// Values of header `name` (case-insensitive), trimmed of spaces/tabs.
pub(super) fn header<'h>(
    headers: &'h [(String, String)],
    name: &'h str,
) -> impl Iterator<Item = &'h str> {
    let hits = headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name));
    hits.map(|(_, v)| v.trim_matches([' ', '\t']))
}

/// A signature header's value; repeated headers are one comma-separated list (RFC 9110 §5.3).
pub(super) fn sig_value<'h>(
    headers: &'h [(String, String)],
    scheme: Scheme,
) -> Option<Cow<'h, str>> {
    let mut values = header(headers, scheme.header_name());
    let first = values.next()?;
    let rest: Vec<&str> = values.collect();
    match rest.is_empty() {
        true => Some(Cow::Borrowed(first)),
        false => Some(Cow::Owned(format!("{first},{}", rest.join(",")))),
    }
}

/// An HMAC-then-base64 function of a token (SHA-256 for V2/V3, SHA-1 for V1).
type MacFn = fn(&AuthToken, &str) -> String;

fn sha256_mac(token: &AuthToken, msg: &str) -> String {
    token.sign_sha256(msg)
}

fn sha1_mac(token: &AuthToken, msg: &str) -> String {
    algorithm::hmac_sha1_b64(token.expose().as_bytes(), msg)
}

/// How much of a signature that did not match is kept: enough to compare with one's own
/// computation at a glance, far too little to be a signature. A whole value would be a
/// valid signature for the sender's nonce, and the documented form does not sign the body:
/// anyone reading a store, a shared HAR file or a screen could send any body with it.
pub const SIGNATURE_PREFIX_CHARS: usize = 8;

/// The first [`SIGNATURE_PREFIX_CHARS`] characters of `signature`, then `…`.
fn signature_prefix(signature: &str) -> String {
    let cut = signature
        .char_indices()
        .nth(SIGNATURE_PREFIX_CHARS)
        .map_or(signature.len(), |(i, _)| i);
    format!("{}…", &signature[..cut])
}

/// Tries `sts` with each key, recording attempts; stops at the first match.
fn try_keys(
    check: &mut HeaderCheck,
    keys: &[Labeled<'_>],
    form: Form,
    sts: &str,
    mac: MacFn,
) -> bool {
    for k in keys {
        let expected = mac(k.token, sts);
        let matched = algorithm::matching_member(&check.value, &expected).is_some();
        let (key, string_to_sign) = (k.label.clone(), sts.to_owned());
        let expected = match matched {
            true => expected,
            false => signature_prefix(&expected),
        };
        check.attempts.push(Attempt {
            form,
            key,
            string_to_sign,
            expected,
            matched,
        });
        if matched {
            return true;
        }
    }
    false
}

/// A check with no attempts yet.
fn new_check(scheme: Scheme, value: &str, nonce: Option<&str>, result: CheckResult) -> HeaderCheck {
    let (header, value) = (scheme.header_name().to_owned(), value.to_owned());
    let (nonce, attempts) = (nonce.map(str::to_owned), Vec::new());
    HeaderCheck {
        header,
        scheme,
        value,
        nonce,
        result,
        attempts,
    }
}

/// Checks one decisive header: docs form with every key, then (V3 only) the SDK form.
fn check_decisive(
    ctx: &Ctx<'_, '_>,
    scheme: Scheme,
    value: &str,
    nonce: Option<&str>,
) -> HeaderCheck {
    let mut check = new_check(scheme, value, nonce, CheckResult::Malformed);
    let Some(nonce) = nonce.filter(|n| !n.is_empty()) else {
        return check;
    };
    if algorithm::members(value).next().is_none() {
        return check;
    }
    let keys = ctx.keys_for(scheme);
    if keys.is_empty() {
        check.result = CheckResult::Unchecked;
        return check;
    }
    let (base, _) = algorithm::split_url(ctx.req.url);
    let docs = match scheme.is_v3() {
        true => algorithm::v3_docs_string(base, nonce),
        false => algorithm::v2_string(base, nonce),
    };
    let mac: MacFn = sha256_mac;
    let mut valid = try_keys(&mut check, keys, Form::Docs, &docs, mac);
    if !valid && scheme.is_v3() {
        // Without query or params the SDK string equals the docs one: no need to retry it.
        if let Some(sdk) = ctx.sdk_string(ctx.req.url, nonce).filter(|s| *s != docs) {
            valid = try_keys(&mut check, keys, Form::Sdk, &sdk, mac);
        }
    }
    check.result = if valid {
        CheckResult::Valid
    } else {
        CheckResult::Invalid
    };
    check
}

/// Computes the legacy V1 header (Go/Node form, POST fields only) for display; never decisive.
fn check_v1(ctx: &Ctx<'_, '_>, value: &str) -> HeaderCheck {
    if algorithm::members(value).next().is_none() {
        return new_check(Scheme::V1, value, None, CheckResult::Malformed);
    }
    let mut check = new_check(Scheme::V1, value, None, CheckResult::Informational);
    if !ctx.auth.is_empty() {
        let no_params = Params::new();
        let post = ctx.req.method.eq_ignore_ascii_case("POST");
        let sts = algorithm::v1_string(ctx.req.url, if post { ctx.params() } else { &no_params });
        try_keys(&mut check, &ctx.auth, Form::Docs, &sts, sha1_mac);
    }
    check
}

/// Verifies a callback's signature headers against `keys`.
///
/// Valid if any decisive header (V3, V2, MA-V3, MA-V2 — reported in that order of
/// preference) verifies with a key of its kind in either V3 form; Unsigned without any
/// decisive header (V1 alone is informational); Unchecked when no configured key could
/// check any header present; Invalid otherwise, with a near-miss explanation when one of
/// a small fixed set of variants would have verified. Never panics, whatever the input.
pub fn verify(req: &CallbackRequest<'_>, keys: &Keys) -> Verdict {
    let ctx = Ctx::new(req, keys);
    let mut checks = Vec::new();
    for scheme in Scheme::DECISIVE {
        if let Some(value) = sig_value(req.headers, scheme) {
            let nonce = scheme
                .nonce_header()
                .and_then(|n| header(req.headers, n).next());
            checks.push(check_decisive(&ctx, scheme, &value, nonce));
        }
    }
    let decisive = checks.len();
    if let Some(value) = sig_value(req.headers, Scheme::V1) {
        // V1 costs a body parse and a SHA-1 for a header that never decides; once a decisive
        // header verified (every real callback), it is listed without being computed.
        let settled = checks.iter().any(|c| c.result == CheckResult::Valid);
        checks.push(match settled {
            true => new_check(Scheme::V1, &value, None, CheckResult::Informational),
            false => check_v1(&ctx, &value),
        });
    }
    let mut v = Verdict::bare(VerdictStatus::Unsigned);
    let strongest = checks.first().filter(|_| decisive > 0);
    let checkable = checks
        .iter()
        .take(decisive)
        .any(|c| !ctx.keys_for(c.scheme).is_empty());
    let winner = checks
        .iter()
        .take(decisive)
        .find(|c| c.result == CheckResult::Valid);
    if let Some(c) = strongest {
        (v.scheme, v.nonce, v.signature) = (Some(c.scheme), c.nonce.clone(), Some(c.value.clone()));
    }
    let say = |v: &mut Verdict, s: &str| v.explanation.push(s.to_owned());
    match (strongest, winner) {
        (None, _) => match (checks.first(), checks.first().and_then(other_product)) {
            (None, _) => {
                say(&mut v, "No Vobiz signature headers.");
                say(&mut v, UNSIGNED);
            }
            (Some(_), Some(product)) => v.explanation.push(product),
            (Some(_), None) => {
                say(&mut v, ONLY_V1);
                say(&mut v, UNSIGNED);
            }
        },
        (Some(_), _) if !checkable => {
            v.status = VerdictStatus::Unchecked;
            say(&mut v, UNCHECKED);
        }
        (Some(_), Some(c)) => {
            v.status = VerdictStatus::Valid;
            if let Some(a) = c.attempts.iter().find(|a| a.matched) {
                v.scheme = Some(c.scheme);
                v.form = c.scheme.is_v3().then_some(a.form);
                v.key = Some(a.key.clone());
                v.nonce = c.nonce.clone();
                v.signature = algorithm::matching_member(&c.value, &a.expected).map(str::to_owned);
                let form = v
                    .form
                    .map(|f| format!(" ({})", f.describe()))
                    .unwrap_or_default();
                let line = format!("{} verified{form} with {}.", c.header, a.key);
                v.explanation.push(line);
                if a.form == Form::Sdk {
                    say(&mut v, SDK_FORM);
                }
            }
        }
        (Some(_), None) => {
            v.status = VerdictStatus::Invalid;
            v.would_match = explain::near_miss(&ctx, checks.get(..decisive).unwrap_or_default());
            v.explanation
                .extend(v.would_match.as_ref().map(|nm| nm.sentence.clone()));
            if checks.iter().any(|c| c.result == CheckResult::Invalid) {
                let base = algorithm::split_url(req.url).0;
                v.explanation.push(format!(
                    "No signature header verified with the configured tokens; the signature \
                     covers the exact URL Vobiz called (taken to be {base}) and the nonce."
                ));
            }
        }
    }
    let decided = v.status == VerdictStatus::Valid;
    for c in &checks {
        v.explanation.extend(note(c, decided, &v));
    }
    v.checks = checks;
    v
}

/// What another Vobiz product's `X-Vobiz-Signature` looks like, when the V1 header has its
/// shape rather than V1's (28 base64 characters): those sign the raw body, not the URL.
pub(super) fn other_product(v1: &HeaderCheck) -> Option<String> {
    let value = v1.value.trim();
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let product = match value.strip_prefix("sha256=") {
        Some(digest) if hex(digest) => {
            "a KYC webhook's signature (sha256= and a hex HMAC of the raw body)"
        }
        _ if hex(value) => "a trunk or NDNC webhook's signature (a hex HMAC of the raw body)",
        _ => return None,
    };
    Some(format!(
        "{} holds {product}, not a voice callback's: this tool checks the V2/V3 headers of \
         voice callbacks only, so the request counts as unsigned.",
        v1.header
    ))
}

/// What is wrong with the shape of a V2/V3 header's values, when none of them looks like a
/// base64 HMAC-SHA256 (44 characters of the standard alphabet, ending in `=`): a value of
/// another shape can never verify, whatever the URL or the token.
fn shape_problem(c: &HeaderCheck) -> Option<String> {
    let standard = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let shaped = |m: &str| {
        let b = m.as_bytes();
        b.len() == 44 && b[43] == b'=' && b[..43].iter().all(|&b| standard(b))
    };
    let members: Vec<&str> = algorithm::members(&c.value).collect();
    if members.is_empty() || members.iter().any(|m| shaped(m)) {
        return None;
    }
    let m = members[0];
    let looks = if m.len() == 64 && m.bytes().all(|b| b.is_ascii_hexdigit()) {
        "64 hex digits (a hex digest)".to_owned()
    } else if m.len() == 43 && m.bytes().all(standard) {
        "43 characters: its '=' padding is missing".to_owned()
    } else if m.len() == 44
        && m.bytes().any(|b| b"-_".contains(&b))
        && m.bytes().all(|b| standard(b) || b"-_=".contains(&b))
    {
        "URL-safe base64 ('-', '_'), not the standard alphabet".to_owned()
    } else if m.trim_end_matches('=').bytes().all(standard) {
        format!(
            "{} characters of base64, where an HMAC-SHA256 is 43 and a '='",
            m.len()
        )
    } else {
        format!("{} characters, not base64", m.chars().count())
    };
    Some(format!(
        "{} is not a base64 HMAC-SHA256 (44 characters ending in '='): it holds {looks}.",
        c.header
    ))
}

/// A sentence about a header other than the deciding one, if it has something to say.
fn note(c: &HeaderCheck, decided: bool, v: &Verdict) -> Option<String> {
    let h = &c.header;
    let nonce_header = c.scheme.nonce_header().unwrap_or_default();
    let empty = algorithm::members(&c.value).next().is_none();
    Some(match c.result {
        CheckResult::Malformed if empty => format!("{h} is empty."),
        CheckResult::Malformed if c.nonce.is_none() => {
            format!("{h} has no {nonce_header} header to go with it.")
        }
        CheckResult::Malformed => format!("{h} has an empty {nonce_header} header."),
        CheckResult::Unchecked if v.status == VerdictStatus::Unchecked => return None,
        CheckResult::Unchecked if c.scheme.is_main() => {
            format!("{h} not checked: no main (parent) account token configured ({MAIN_HINT}).")
        }
        CheckResult::Unchecked => {
            format!("{h} not checked: no auth token configured ({AUTH_HINT}).")
        }
        CheckResult::Invalid if shape_problem(c).is_some() => shape_problem(c)?,
        CheckResult::Invalid if decided => format!("{h} did not verify."),
        CheckResult::Invalid | CheckResult::Valid => return None,
        CheckResult::Informational => {
            let a = c.attempts.iter().find(|a| a.matched)?;
            format!(
                "{h} (legacy V1) also matches with {} in the Go/Node form; informational only.",
                a.key
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::sign_v3_docs;
    use super::*;

    const T: &str = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
    const URL: &str = "https://e.com/cb?a=1";
    const N: &str = "12345678901234567890";

    #[test]
    fn hot_path_is_one_docs_hmac_per_token_tried() {
        let sig = sign_v3_docs(&AuthToken::new(T), URL, N);
        let (headers, body) = (&[], b"x=1");
        let req = CallbackRequest {
            method: "POST",
            url: URL,
            headers,
            body,
            extra_ports: &[],
            other_urls: &[],
        };
        let auth_tokens = ["old-token", T, "unused"].map(AuthToken::new).to_vec();
        let keys = Keys {
            auth_tokens,
            ..Keys::default()
        };
        let ctx = Ctx::new(&req, &keys);
        let check = check_decisive(&ctx, Scheme::V3, &sig, Some(N));
        let tried: Vec<(Form, bool)> = check.attempts.iter().map(|a| (a.form, a.matched)).collect();
        assert_eq!(
            tried,
            [(Form::Docs, false), (Form::Docs, true)],
            "stops at the match"
        );
        assert_eq!(check.attempts[1].key, "auth token #2 (TEST…XYZ)");
        assert!(ctx.params.get().is_none(), "no body parse, no SDK string");
    }
}
