//! What a row holds beyond the exchange's own fields: the encoded columns (header blocks,
//! the stored verdict, flags, findings, the nonce key), computed where the exchange is
//! queued rather than on the writer thread. The writer commits for every callback in
//! flight at once; the less it has to do per row, the sooner each of them is answered.

use crate::exchange::{Exchange, Flag};
use crate::signature::{self, stored};

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
    /// See [`nonce_key`].
    pub nonce_key: Option<String>,
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
            nonce_key: nonce_key(exchange),
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
