//! What a row holds beyond the exchange's own fields: the encoded columns (header blocks,
//! the stored verdict, flags, findings, the nonce key), computed where the exchange is
//! queued rather than on the writer thread. The writer commits for every callback in
//! flight at once; the less it has to do per row, the sooner each of them is answered.

use crate::exchange::{Exchange, Flag};
use crate::signature::{self, stored};

/// An exchange's encoded columns.
pub(super) struct Row {
    pub request_headers: Vec<u8>,
    pub signature_detail: String,
    /// See [`nonce_key`].
    pub nonce_key: Option<String>,
    pub response_headers: Option<Vec<u8>>,
    pub flags: String,
    pub findings: String,
}

impl Row {
    pub fn of(exchange: &Exchange) -> Row {
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
        Row {
            request_headers: request.headers.to_block(),
            signature_detail,
            nonce_key: nonce_key(exchange),
            response_headers: exchange.response.as_ref().map(|r| r.headers.to_block()),
            flags: flags_text(&exchange.flags),
            findings: findings_json(exchange),
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

/// The key under which a signed request's nonce is remembered: nonce and signature together,
/// so two different callbacks that happen to share a nonce are not confused.
fn nonce_key(exchange: &Exchange) -> Option<String> {
    let verdict = &exchange.verdict;
    match (&verdict.nonce, &verdict.signature) {
        (Some(nonce), Some(signature)) => Some(format!("{nonce} {signature}")),
        _ => None,
    }
}
