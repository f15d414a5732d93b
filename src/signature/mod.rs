//! Vobiz voice-callback signatures: verification, signing and the *explanation* of a failure.
//!
//! This module owns everything about the `X-Vobiz-Signature*` headers (spec §1.1, §2, §3):
//! - [`verify`] turns a received callback plus the configured tokens into a [`Verdict`]
//!   (valid / invalid / unsigned / unchecked), with one [`HeaderCheck`] per signature header
//!   and, on failure, a [`NearMiss`] saying which nearby URL/token/header variant would
//!   have verified;
//! - [`sign_v1`] … [`signed_headers`] produce signatures for replaying or triggering callbacks.
//!
//! V2/V3 are checked with auth tokens, `-MA-` headers with main (parent) account tokens; V3
//! is tried in the documented form first, then in the Python SDK form. V1 is computed and
//! shown but never decides. Tokens never appear in any string produced here, only
//! [`AuthToken::redacted`] labels.

mod algorithm;
pub(crate) use algorithm::members as header_values;
mod explain;
pub mod other_urls;
mod sign;
pub mod stored;
#[cfg(test)]
mod tests;
mod verify;

pub use other_urls::OtherUrl;
pub use sign::{
    fresh_nonce, sign_v1, sign_v2, sign_v3_docs, sign_v3_sdk, signed_headers,
    signed_headers_with_nonces, SigningKeys,
};
pub use verify::{verify, SIGNATURE_PREFIX_CHARS};

use std::fmt;

use serde::{Deserialize, Serialize};

/// An auth token. Never printed in full: `Debug` and `Display` show [`AuthToken::redacted`].
///
/// The redacted form and the HMAC-SHA256 key schedule are computed once, when the token is
/// configured, rather than for every callback verified.
#[derive(Clone)]
pub struct AuthToken {
    secret: String,
    shown: String,
    /// HMAC-SHA256 keyed with the token, ready to be cloned for each message (boxed: it is
    /// a few hundred bytes, and tokens travel in enums and vectors).
    keyed: Option<Box<hmac::Hmac<sha2::Sha256>>>,
}

impl PartialEq for AuthToken {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret
    }
}

impl Eq for AuthToken {}

impl AuthToken {
    /// Wraps a token.
    pub fn new(s: impl Into<String>) -> Self {
        let secret = s.into();
        AuthToken {
            shown: redact(&secret),
            keyed: algorithm::hmac_sha256_keyed(secret.as_bytes()).map(Box::new),
            secret,
        }
    }

    /// The token itself, for HMAC keys only. Never log or display this.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// A recognisable but safe form, e.g. `TEST…XYZ`: the first 4 and last 3 characters,
    /// fewer for short tokens so that at most half of the token is ever shown.
    pub fn redacted(&self) -> String {
        self.shown.clone()
    }

    /// [`AuthToken::redacted`], borrowed.
    fn shown(&self) -> &str {
        &self.shown
    }

    /// `base64(HMAC-SHA256(token, msg))`.
    fn sign_sha256(&self, msg: &str) -> String {
        match &self.keyed {
            Some(keyed) => algorithm::hmac_sha256_b64_with(keyed, msg),
            None => algorithm::hmac_sha256_b64(self.secret.as_bytes(), msg),
        }
    }
}

/// See [`AuthToken::redacted`].
fn redact(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.is_empty() {
        return "(empty)".to_owned();
    }
    let budget = chars.len() / 2;
    let head = 4.min(budget.div_ceil(2));
    let tail = 3.min(budget - head);
    let mut s: String = chars.iter().take(head).collect();
    s.push('…');
    s.extend(chars.iter().skip(chars.len() - tail));
    s
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthToken({})", self.shown())
    }
}

impl fmt::Display for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

/// Tokens configured for verification (several auth tokens allowed, for rotation).
#[derive(Clone, Debug, Default)]
pub struct Keys {
    /// Tokens for `X-Vobiz-Signature-V2`/`-V3` (and the informational V1).
    pub auth_tokens: Vec<AuthToken>,
    /// Main (parent) account tokens for `X-Vobiz-Signature-MA-V2`/`-MA-V3`.
    pub main_auth_tokens: Vec<AuthToken>,
}

impl Keys {
    /// True when no token of either kind is configured.
    pub fn is_empty(&self) -> bool {
        self.auth_tokens.is_empty() && self.main_auth_tokens.is_empty()
    }
}

/// Whether verification (and the stored form of its verdict) ever reads header `name`: the
/// `X-Vobiz-*` signature and nonce headers, and `Content-Type`, which says whether the body
/// is a form for the SDK's string to sign. A [`CallbackRequest`] may leave every other
/// header out and gets the same verdict; the proxy does, to copy a few headers, not all.
pub fn reads_header(name: &str) -> bool {
    let vobiz = name
        .as_bytes()
        .get(..b"x-vobiz-".len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"x-vobiz-"));
    vobiz || name.eq_ignore_ascii_case("content-type")
}

/// What Vobiz sent, as the tool saw it.
#[derive(Clone, Copy, Debug)]
pub struct CallbackRequest<'a> {
    /// `POST`, `GET`, … (case-insensitive).
    pub method: &'a str,
    /// The public URL Vobiz called: `scheme://authority/path[?query]`.
    pub url: &'a str,
    /// Headers as received (at least those [`reads_header`] names); name lookup is
    /// case-insensitive.
    pub headers: &'a [(String, String)],
    /// Raw body; form-decoded for the SDK form (and V1) when it is a form.
    pub body: &'a [u8],
    /// Ports worth trying in explanations (e.g. the listener's port).
    pub extra_ports: &'a [u16],
    /// Other URLs Vobiz may have called, tried first by explanations ([`other_urls`]).
    pub other_urls: &'a [OtherUrl],
}

/// Overall outcome of [`verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictStatus {
    /// A decisive header verified.
    Valid,
    /// Decisive headers were checked and none verified.
    Invalid,
    /// No decisive signature header (V1 alone counts as unsigned).
    Unsigned,
    /// Signature headers present but no token that could check any of them.
    Unchecked,
}

impl VerdictStatus {
    /// `"valid"`, `"invalid"`, `"unsigned"` or `"unchecked"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Unsigned => "unsigned",
            Self::Unchecked => "unchecked",
        }
    }
}

/// A signature header kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    /// Legacy HMAC-SHA1 (`X-Vobiz-Signature`), informational only.
    V1,
    /// `base + nonce`, auth token.
    V2,
    /// `base + "." + nonce` (or the SDK form), auth token.
    V3,
    /// V2 keyed with the main (parent) account token.
    #[serde(rename = "MA-V2")]
    MaV2,
    /// V3 keyed with the main (parent) account token.
    #[serde(rename = "MA-V3")]
    MaV3,
}

impl Scheme {
    /// Decisive schemes, strongest first: the order in which headers are checked/reported.
    pub const DECISIVE: [Scheme; 4] = [Scheme::V3, Scheme::V2, Scheme::MaV3, Scheme::MaV2];

    /// `"V1"`, `"V2"`, `"V3"`, `"MA-V2"` or `"MA-V3"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::V1 => "V1",
            Self::V2 => "V2",
            Self::V3 => "V3",
            Self::MaV2 => "MA-V2",
            Self::MaV3 => "MA-V3",
        }
    }

    /// The header carrying this signature, e.g. `X-Vobiz-Signature-MA-V3`.
    pub fn header_name(&self) -> &'static str {
        match self {
            Self::V1 => "X-Vobiz-Signature",
            Self::V2 => "X-Vobiz-Signature-V2",
            Self::V3 => "X-Vobiz-Signature-V3",
            Self::MaV2 => "X-Vobiz-Signature-MA-V2",
            Self::MaV3 => "X-Vobiz-Signature-MA-V3",
        }
    }

    /// The nonce header this signature uses (MA headers reuse the V2/V3 nonces); none for V1.
    pub fn nonce_header(&self) -> Option<&'static str> {
        match self {
            Self::V1 => None,
            Self::V2 | Self::MaV2 => Some("X-Vobiz-Signature-V2-Nonce"),
            Self::V3 | Self::MaV3 => Some("X-Vobiz-Signature-V3-Nonce"),
        }
    }

    /// True for the `-MA-` headers, which are keyed with main (parent) account tokens.
    pub fn is_main(&self) -> bool {
        matches!(self, Self::MaV2 | Self::MaV3)
    }

    /// True for V3 and MA-V3, the only schemes with two forms (docs and SDK).
    pub fn is_v3(&self) -> bool {
        matches!(self, Self::V3 | Self::MaV3)
    }
}

/// Which V3 string-to-sign verified: the documented one or the Python SDK's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// `base + "." + nonce` (V2: `base + nonce`) — what Vobiz documents.
    Docs,
    /// Python SDK `validate_v3_signature`: sorted query and POST params included.
    Sdk,
}

impl Form {
    /// `"docs form"` / `"SDK form"`, for sentences.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Docs => "docs form",
            Self::Sdk => "SDK form",
        }
    }
}

/// The outcome of [`verify`], serialisable for storage and display.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Overall status.
    pub status: VerdictStatus,
    /// Header that decided (Valid); for Invalid/Unchecked the strongest header present.
    pub scheme: Option<Scheme>,
    /// V3 form that verified (`None` for V2/MA-V2, where only one form exists).
    pub form: Option<Form>,
    /// Label of the key that verified, e.g. `auth token #1 (TEST…XYZ)`; never the token.
    pub key: Option<String>,
    /// Nonce of the deciding header (for nonce-reuse detection).
    pub nonce: Option<String>,
    /// The deciding header's signature (the member that matched, for Valid).
    pub signature: Option<String>,
    /// One per signature header present, strongest first, V1 last.
    pub checks: Vec<HeaderCheck>,
    /// Human sentences, most important first.
    pub explanation: Vec<String>,
    /// For Invalid: a nearby variant that would have verified.
    pub would_match: Option<NearMiss>,
}

/// Verifies a recorded request as it stands (its URL, headers and body; no other URLs to
/// explain with): what a replay, an import or a laptop's record of a relay rejection needs.
pub fn verify_record(request: &crate::exchange::RequestRecord, keys: &Keys) -> Verdict {
    let headers = request.headers.text_pairs_where(reads_header);
    verify(
        &CallbackRequest {
            method: &request.method,
            url: &request.public_url,
            headers: &headers,
            body: &request.body,
            extra_ports: &[],
            other_urls: &[],
        },
        keys,
    )
}

impl Verdict {
    /// A verdict of `status` with nothing else known yet: no header, key or sentence.
    pub fn bare(status: VerdictStatus) -> Verdict {
        Verdict {
            status,
            scheme: None,
            form: None,
            key: None,
            nonce: None,
            signature: None,
            checks: Vec::new(),
            explanation: Vec::new(),
            would_match: None,
        }
    }

    /// One line, e.g. `valid (V3, docs form, auth token #1 (TEST…XYZ))` or
    /// `invalid: would be valid if Vobiz had called https://h:8443/cb (port 8443 added)`.
    pub fn summary(&self) -> String {
        explain::summary(self)
    }

    /// The explanation's sentences that [`Verdict::summary`] does not already say, for
    /// reports that print the summary and then the explanation.
    pub fn explanation_beyond_summary(&self) -> &[String] {
        let summary = self.summary();
        let said = |sentence: &str| {
            summary.split_once(": ").is_some_and(|(_, detail)| {
                detail.eq_ignore_ascii_case(sentence.trim_end_matches('.'))
            })
        };
        match self.explanation.split_first() {
            Some((first, rest)) if said(first) => rest,
            _ => &self.explanation,
        }
    }
}

/// The check of one signature header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeaderCheck {
    /// Header name, canonical spelling.
    pub header: String,
    /// Its scheme.
    pub scheme: Scheme,
    /// The header value as received.
    pub value: String,
    /// The nonce used (`None` if its nonce header is missing).
    pub nonce: Option<String>,
    /// Outcome for this header.
    pub result: CheckResult,
    /// Every key/form tried, in order.
    pub attempts: Vec<Attempt>,
}

/// Outcome for one header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckResult {
    /// Verified with one of the keys.
    Valid,
    /// No key/form verified.
    Invalid,
    /// No key of the kind this header needs.
    Unchecked,
    /// Empty value or missing/empty nonce header.
    Malformed,
    /// V1: computed and shown, never decisive.
    Informational,
}

/// One key × form tried on a header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Form of the string to sign (`Docs` for V1/V2, which have one form).
    pub form: Form,
    /// Key label (redacted).
    pub key: String,
    /// The exact string that was HMAC'd.
    pub string_to_sign: String,
    /// The signature that string produces: whole when it matched (it is then the received
    /// value), otherwise only its first characters (see [`SIGNATURE_PREFIX_CHARS`]).
    pub expected: String,
    /// Whether a member of the header equals `expected`.
    pub matched: bool,
}

/// A nearby variant that would have verified an invalid callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NearMiss {
    /// What differs, e.g. `port 8443 added`.
    pub variant: String,
    /// The URL under which it verifies (with any password in it masked).
    pub url: String,
    /// The header that would have verified.
    pub header: String,
    /// Key label (redacted).
    pub key: String,
    /// Form of the string to sign.
    pub form: Form,
    /// The sentence to show, e.g.
    /// `Would be valid if Vobiz had called https://h:8443/cb (port 8443 added)`.
    pub sentence: String,
}
