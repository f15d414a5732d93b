//! What a row holds beyond the exchange's own fields: the encoded columns (header blocks,
//! the stored verdict, flags, findings, the nonce key), computed where the exchange is
//! queued rather than on the writer thread. The writer commits for every callback in
//! flight at once; the less it has to do per row, the sooner each of them is answered.

use sha2::{Digest, Sha256};

use crate::exchange::{Exchange, Flag};
use crate::signature::{self, stored, Scheme};

/// An exchange's encoded columns.
pub(super) struct Row {
    /// Only for an exchange without a row yet: the end of one already written as pending
    /// (a slow answer) updates the response side alone.
    pub request: Option<RequestColumns>,
    pub response_headers: Option<Vec<u8>>,
    pub flags: String,
    pub findings: String,
}

/// The encoded columns of the request side, written once, with the row.
pub(super) struct RequestColumns {
    pub headers: Vec<u8>,
    pub signature_detail: String,
    /// The deciding header's nonce and signature: what the store indexes to find a replay,
    /// even from before a restart.
    pub nonce_key: Option<String>,
    /// Every signature header's, as the writer remembers them lately (see [`nonce_keys`]).
    pub nonce_keys: Vec<i64>,
}

impl Row {
    pub fn of(exchange: &Exchange) -> Row {
        Row {
            request: exchange.id.is_none().then(|| RequestColumns::of(exchange)),
            response_headers: exchange.response.as_ref().map(|r| r.headers.to_block()),
            flags: flags_text(&exchange.flags),
            findings: findings_json(exchange),
        }
    }
}

impl RequestColumns {
    pub fn of(exchange: &Exchange) -> RequestColumns {
        let request = &exchange.request;
        // The reader rebuilds from all the headers; these are the ones that can matter.
        let header_pairs = request.headers.text_pairs_where(signature::reads_header);
        let signature_detail = stored::to_stored_json(
            &exchange.verdict,
            &stored::Received {
                headers: &header_pairs,
                url: &request.public_url,
            },
        );
        RequestColumns {
            headers: request.headers.to_block(),
            signature_detail,
            nonce_key: nonce_text(exchange),
            nonce_keys: nonce_keys(exchange),
        }
    }
}

pub(super) fn flags_text(flags: &[Flag]) -> String {
    flags
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The findings as the JSON array the `findings` column holds.
fn findings_json(exchange: &Exchange) -> String {
    if exchange.findings.is_empty() {
        return "[]".into(); // the common case, without serde
    }
    serde_json::to_string(&exchange.findings).unwrap_or_else(|_| "[]".into())
}

/// The deciding header's nonce and signature, as the `nonce_key` column holds them.
pub fn nonce_text(exchange: &Exchange) -> Option<String> {
    let verdict = &exchange.verdict;
    match (&verdict.nonce, &verdict.signature) {
        (Some(nonce), Some(signature)) => Some(format!("{nonce} {signature}")),
        _ => None,
    }
}

/// Signature values looked at per header: a list longer than a token rotation needs is
/// not a Vobiz callback, and each value costs the store a key.
const VALUES_PER_HEADER: usize = 4;

/// The keys under which a request's nonces are remembered, one per value of each V2, V3
/// and -MA- header (with its nonce): whichever of them a replay repeats finds the original.
/// Nonce and signature go together, so two callbacks that happen to share a nonce (the
/// signature covers the URL) are not confused.
pub fn nonce_keys(exchange: &Exchange) -> Vec<i64> {
    let verdict = &exchange.verdict;
    // The deciding one first: it is among the headers' own, unless the verdict came without
    // them (an import of another tool's verdict).
    let mut keys: Vec<i64> = match (&verdict.nonce, &verdict.signature) {
        (Some(nonce), Some(signature)) => vec![nonce_hash(nonce, signature)],
        _ => Vec::new(),
    };
    for check in &verdict.checks {
        let Some(nonce) = check.nonce.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        if check.scheme == Scheme::V1 {
            continue;
        }
        // As verification reads them.
        for value in signature::header_values(&check.value).take(VALUES_PER_HEADER) {
            let key = nonce_hash(nonce, value);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

/// The key of a stored `nonce_key` text (`nonce signature`): the one [`nonce_keys`] gives
/// first for the exchange it was stored for.
pub fn nonce_text_key(text: &str) -> i64 {
    first_64_bits(Sha256::new().chain_update(text))
}

/// The first 64 bits of SHA-256 over `nonce signature`: a signature is already an HMAC, and
/// the writer keeps 8 bytes per header instead of about 70 (see `recent_nonces`).
fn nonce_hash(nonce: &str, signature: &str) -> i64 {
    first_64_bits(
        Sha256::new()
            .chain_update(nonce)
            .chain_update(" ")
            .chain_update(signature),
    )
}

fn first_64_bits(hashed: Sha256) -> i64 {
    let digest = hashed.finalize();
    i64::from_be_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_nonce_text_gives_the_key_nonce_keys_gives_first() {
        let mut exchange = crate::export::tests::sample();
        exchange.verdict.nonce = Some("73618193581904318901".into());
        exchange.verdict.signature = Some("aGVsbG8gd29ybGQ=".into());
        let text = nonce_text(&exchange).unwrap();
        assert_eq!(nonce_text_key(&text), nonce_keys(&exchange)[0]);
    }
}
