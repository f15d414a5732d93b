//! Fixtures shared by the benchmarks (`signature`, `store`, `load`): a realistic Vobiz Hangup
//! callback body, the tokens, fresh nonces and the signature headers a real callback carries.
//! Not a benchmark itself; each bench includes it with `#[path]`.

#![allow(dead_code)] // each bench uses a different subset

use vobiz_tunnel::signature::{
    sign_v2, sign_v3_docs, signed_headers_with_nonces, AuthToken, Form, Keys, SigningKeys,
};

pub const TOKEN: &str = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
pub const MAIN_TOKEN: &str = "PARENTtokenNOTreal9876543210zyxwvutsrqpo";
/// Tokens that verify nothing: rotation leftovers tried before the right one.
pub const OTHER_TOKENS: [&str; 2] = [
    "OLDTOKENnotReal0000000000000000000000AAA",
    "SUBTOKENnotReal1111111111111111111111BBB",
];

pub const PATH: &str = "/vobiz/hangup";

/// The URL Vobiz signs for a listener on `port` (what the pipeline rebuilds from `Host`).
pub fn url(port: u16) -> String {
    format!("https://localhost:{port}{PATH}")
}

/// A distinct, UUID-shaped CallUUID per `n`, so every request body differs like real traffic.
pub fn call_uuid(n: u64) -> String {
    format!(
        "7d1c2c5e-{:04x}-4c59-9d1e-{:012x}",
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

/// A 20-digit decimal nonce like Vobiz's; distinct for distinct `n`.
pub fn nonce(n: u64) -> String {
    format!("{:020}", 10_000_000_000_000_000_000u64.wrapping_add(n))
}

/// A realistic Vobiz Hangup form body (keys in byte order, as Vobiz sends them), ~700 bytes.
pub fn hangup_body(call_uuid: &str) -> String {
    format!(
        "ALegRequestUUID=a3e1f0b2-6c1d-4e8a-9b7f-2d4c6e8f0a1b&ALegUUID={call_uuid}\
&AnswerTime=2026-06-08+11%3A41%3A24&BillDuration=120&BillRate=0.00500\
&CallStatus=completed&CallUUID={call_uuid}&CallerName=%2B919876543210&Direction=inbound\
&Duration=118&EndTime=2026-06-08+11%3A43%3A22&Event=Hangup&From=919876543210\
&HangupCause=NORMAL_CLEARING&HangupCauseCode=4000&HangupCauseName=Normal+Hangup\
&HangupSource=Caller&ParentAuthID=MA_XXXXXXXX&RequestUUID=b8d2e4f6-1a3c-4e5f-8a9b-0c1d2e3f4a5b\
&STIRAttestation=A&STIRVerification=Verified&SessionStart=2026-06-08+11%3A41%3A20.130248\
&StartTime=2026-06-08+11%3A41%3A20&To=918000000000&TotalCost=0.01000&TotalRate=0.00500"
    )
}

pub fn keys(auth: &[&str], main: &[&str]) -> Keys {
    Keys {
        auth_tokens: auth.iter().map(|t| AuthToken::new(*t)).collect(),
        main_auth_tokens: main.iter().map(|t| AuthToken::new(*t)).collect(),
    }
}

/// The ordinary headers of a Vobiz callback, before the signature headers.
pub fn plain_headers(host: &str, body_len: usize) -> Vec<(String, String)> {
    vec![
        ("host".into(), host.into()),
        ("user-agent".into(), "Vobiz".into()),
        (
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ),
        ("content-length".into(), body_len.to_string()),
        ("accept".into(), "*/*".into()),
    ]
}

/// All seven signature headers (V1, V2 + nonce, V3 + nonce, MA-V2, MA-V3) with the crate's
/// own signing code, in the given V3 form.
pub fn all_signature_headers(url: &str, body: &str, form: Form, n: u64) -> Vec<(String, String)> {
    let keys = SigningKeys {
        auth_token: AuthToken::new(TOKEN),
        main_auth_token: Some(AuthToken::new(MAIN_TOKEN)),
    };
    let (n2, n3) = (nonce(2 * n), nonce(2 * n + 1));
    signed_headers_with_nonces("POST", url, body.as_bytes(), &keys, form, &n2, &n3)
}

/// Only what the load generator sends: V2 and V3 (docs form) with fresh nonces. Two HMACs,
/// so the sender's own cost stays small next to the proxy's.
pub fn v2_v3_headers(token: &AuthToken, url: &str, n: u64) -> [(&'static str, String); 4] {
    let (n2, n3) = (nonce(2 * n), nonce(2 * n + 1));
    [
        ("x-vobiz-signature-v2", sign_v2(token, url, &n2)),
        ("x-vobiz-signature-v2-nonce", n2),
        ("x-vobiz-signature-v3", sign_v3_docs(token, url, &n3)),
        ("x-vobiz-signature-v3-nonce", n3),
    ]
}

/// A signed Hangup callback, number `n` (its own CallUUID and nonces), as the load
/// generators send it: the headers of a real Vobiz POST; the body is [`hangup_body`].
pub fn hangup_request(
    host: &str,
    token: &AuthToken,
    sign_url: &str,
    n: u64,
) -> hyper::http::request::Builder {
    use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
    let mut builder = hyper::Request::post(PATH)
        .header(HOST, host)
        .header(USER_AGENT, "Vobiz")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "*/*");
    for (name, value) in v2_v3_headers(token, sign_url, n) {
        builder = builder.header(name, value);
    }
    builder
}

/// Reads an answer to its end, as a sender must before reusing the connection, and returns
/// its status; errors are named for the load generators' tallies.
pub async fn answer_status(
    response: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<u16, String> {
    use http_body_util::BodyExt;
    let response = response.map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?;
    Ok(status)
}
