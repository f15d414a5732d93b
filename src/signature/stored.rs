//! The verdict as the store keeps it: the JSON of [`Verdict`] without what the exchange's own
//! request already says (the signature headers' values and nonces, the documented strings to
//! sign) and without what the verdict repeats (the key label, the deciding signature and
//! nonce). A valid callback's verdict shrinks from about 1 KB to about 400 bytes, so that two
//! exchanges share a 4 KB page of the store instead of one each: that halves what the store
//! writes per callback under load.
//!
//! Lossless by construction: a field is left out only when rebuilding it from the request
//! gives exactly the same value, with the same functions on both sides; anything else is kept
//! as it is. Rows written in the full form read unchanged (every field is present).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};

use super::algorithm;
use super::verify::{header, sig_value};
use super::{Attempt, CheckResult, Form, HeaderCheck, NearMiss, Scheme, Verdict, VerdictStatus};

/// What the request says, for rebuilding: its headers as text, and the URL that was verified.
pub struct Received<'r> {
    pub headers: &'r [(String, String)],
    pub url: &'r str,
}

impl Received<'_> {
    /// The value of `scheme`'s header as verification read it.
    fn value(&self, scheme: Scheme) -> Option<Cow<'_, str>> {
        sig_value(self.headers, scheme)
    }

    /// The nonce `scheme`'s header is checked with.
    fn nonce(&self, scheme: Scheme) -> Option<&str> {
        scheme
            .nonce_header()
            .and_then(|name| header(self.headers, name).next())
    }

    /// The documented string to sign for `scheme` with `nonce` (none for V1).
    fn docs_string(&self, scheme: Scheme, nonce: Option<&str>) -> Option<String> {
        let nonce = nonce?;
        let (base, _) = algorithm::split_url(self.url);
        match scheme {
            Scheme::V1 => None,
            Scheme::V2 | Scheme::MaV2 => Some(algorithm::v2_string(base, nonce)),
            Scheme::V3 | Scheme::MaV3 => Some(algorithm::v3_docs_string(base, nonce)),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredVerdict<'a> {
    status: VerdictStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheme: Option<Scheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    form: Option<Form>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<Cow<'a, str>>,
    /// Absent: the deciding check's nonce.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    nonce: Option<Option<Cow<'a, str>>>,
    /// Absent: the deciding check's value.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    signature: Option<Option<Cow<'a, str>>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    checks: Vec<StoredCheck<'a>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    explanation: Vec<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    would_match: Option<Cow<'a, NearMiss>>,
}

#[derive(Serialize, Deserialize)]
struct StoredCheck<'a> {
    /// Absent: the scheme's canonical header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<Cow<'a, str>>,
    scheme: Scheme,
    /// Absent: the header's value in the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Cow<'a, str>>,
    /// Absent: the nonce header's value in the request.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    nonce: Option<Option<Cow<'a, str>>>,
    result: CheckResult,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attempts: Vec<StoredAttempt<'a>>,
}

#[derive(Serialize, Deserialize)]
struct StoredAttempt<'a> {
    form: Form,
    /// Absent: the verdict's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<Cow<'a, str>>,
    /// Absent: the documented string for the check's scheme and nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    string_to_sign: Option<Cow<'a, str>>,
    /// Absent: the check's value (only for a matching attempt, when the header held just
    /// the one signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected: Option<Cow<'a, str>>,
    matched: bool,
}

/// A field that is present, even as `null`, is `Some` (absent stays `None`, by `default`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `Some(value)` unless `value` equals what rebuilding gives.
fn unless_rebuilt<'a>(value: &'a str, rebuilt: Option<&str>) -> Option<Cow<'a, str>> {
    (rebuilt != Some(value)).then_some(Cow::Borrowed(value))
}

/// Like [`unless_rebuilt`] for an optional value: `Some(None)` keeps a `None` that would
/// otherwise be rebuilt as something.
fn unless_rebuilt_opt<'a>(
    value: Option<&'a str>,
    rebuilt: Option<&str>,
) -> Option<Option<Cow<'a, str>>> {
    (value != rebuilt).then_some(value.map(Cow::Borrowed))
}

/// The deciding check: the one of the verdict's scheme (the first, if several).
fn deciding(checks: &[HeaderCheck], scheme: Option<Scheme>) -> Option<&HeaderCheck> {
    checks.iter().find(|c| Some(c.scheme) == scheme)
}

/// The stored JSON of `verdict`, given the request it was made for.
pub fn to_stored_json(verdict: &Verdict, received: &Received<'_>) -> String {
    let decider = deciding(&verdict.checks, verdict.scheme);
    let checks = verdict
        .checks
        .iter()
        .map(|check| {
            let value = received.value(check.scheme);
            let nonce = received.nonce(check.scheme);
            let docs = received.docs_string(check.scheme, check.nonce.as_deref());
            StoredCheck {
                header: unless_rebuilt(&check.header, Some(check.scheme.header_name())),
                scheme: check.scheme,
                value: unless_rebuilt(&check.value, value.as_deref()),
                nonce: unless_rebuilt_opt(check.nonce.as_deref(), nonce),
                result: check.result,
                attempts: check
                    .attempts
                    .iter()
                    .map(|attempt| StoredAttempt {
                        form: attempt.form,
                        key: unless_rebuilt(&attempt.key, verdict.key.as_deref()),
                        string_to_sign: match attempt.form {
                            Form::Docs => unless_rebuilt(&attempt.string_to_sign, docs.as_deref()),
                            Form::Sdk => Some(Cow::Borrowed(&attempt.string_to_sign)),
                        },
                        expected: unless_rebuilt(
                            &attempt.expected,
                            attempt.matched.then_some(check.value.as_str()),
                        ),
                        matched: attempt.matched,
                    })
                    .collect(),
            }
        })
        .collect();
    let stored = StoredVerdict {
        status: verdict.status,
        scheme: verdict.scheme,
        form: verdict.form,
        key: verdict.key.as_deref().map(Cow::Borrowed),
        nonce: unless_rebuilt_opt(
            verdict.nonce.as_deref(),
            decider.and_then(|c| c.nonce.as_deref()),
        ),
        signature: unless_rebuilt_opt(
            verdict.signature.as_deref(),
            decider.map(|c| c.value.as_str()),
        ),
        checks,
        explanation: verdict
            .explanation
            .iter()
            .map(|s| Cow::Borrowed(s.as_str()))
            .collect(),
        would_match: verdict.would_match.as_ref().map(Cow::Borrowed),
    };
    // Plain data: serialization cannot fail; keep the row rather than panic if it ever did.
    serde_json::to_string(&stored).unwrap_or_else(|_| "{}".into())
}

/// The verdict stored as `json` (either form) for the request it was made for.
pub fn from_stored_json(json: &str, received: &Received<'_>) -> serde_json::Result<Verdict> {
    let stored: StoredVerdict<'_> = serde_json::from_str(json)?;
    // The checks first, without their attempts: the verdict's nonce and signature come from
    // the deciding check, and the attempts' left-out keys from the verdict.
    let mut checks = Vec::with_capacity(stored.checks.len());
    let mut attempts = Vec::with_capacity(stored.checks.len());
    for check in stored.checks {
        let value = match check.value {
            Some(value) => value.into_owned(),
            None => received
                .value(check.scheme)
                .map(Cow::into_owned)
                .unwrap_or_default(),
        };
        let nonce = match check.nonce {
            Some(nonce) => nonce.map(Cow::into_owned),
            None => received.nonce(check.scheme).map(str::to_owned),
        };
        let header = check
            .header
            .map_or_else(|| check.scheme.header_name().to_owned(), Cow::into_owned);
        checks.push(HeaderCheck {
            header,
            scheme: check.scheme,
            value,
            nonce,
            result: check.result,
            attempts: Vec::new(),
        });
        attempts.push(check.attempts);
    }
    let decider = deciding(&checks, stored.scheme);
    let nonce = match stored.nonce {
        Some(nonce) => nonce.map(Cow::into_owned),
        None => decider.and_then(|c| c.nonce.clone()),
    };
    let signature = match stored.signature {
        Some(signature) => signature.map(Cow::into_owned),
        None => decider.map(|c| c.value.clone()),
    };
    let key = stored.key.map(Cow::into_owned);
    for (check, stored_attempts) in checks.iter_mut().zip(attempts) {
        let docs = received.docs_string(check.scheme, check.nonce.as_deref());
        let value = check.value.as_str();
        check.attempts = stored_attempts
            .into_iter()
            .map(|attempt| Attempt {
                form: attempt.form,
                key: rebuilt(attempt.key, key.as_deref()),
                string_to_sign: rebuilt(attempt.string_to_sign, docs.as_deref()),
                expected: rebuilt(attempt.expected, attempt.matched.then_some(value)),
                matched: attempt.matched,
            })
            .collect();
    }
    Ok(Verdict {
        status: stored.status,
        scheme: stored.scheme,
        form: stored.form,
        key,
        nonce,
        signature,
        checks,
        explanation: (stored.explanation.into_iter())
            .map(Cow::into_owned)
            .collect(),
        would_match: stored.would_match.map(Cow::into_owned),
    })
}

/// A stored value, or the rebuilt one when it was left out.
fn rebuilt(stored: Option<Cow<'_, str>>, rebuilt: Option<&str>) -> String {
    match stored {
        Some(value) => value.into_owned(),
        None => rebuilt.unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests;
