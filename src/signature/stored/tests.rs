//! The stored form reads back exactly what was stored, for every kind of verdict `verify`
//! produces, for rows in the full form, and for verdicts that do not match the request
//! they are stored with.

use proptest::prelude::*;

use super::*;
use crate::signature::{
    signed_headers_with_nonces, verify, AuthToken, CallbackRequest, Keys, SigningKeys,
};

const URL: &str = "https://example.com/vobiz/hangup";
const BODY: &[u8] = b"CallUUID=abc&Event=Hangup&Digits=%2A1";

fn keys(auth: &[&str], main: &[&str]) -> Keys {
    let t = |v: &[&str]| v.iter().map(|s| AuthToken::new(*s)).collect();
    Keys {
        auth_tokens: t(auth),
        main_auth_tokens: t(main),
    }
}

fn verdict_for(url: &str, headers: &[(String, String)], keys: &Keys) -> Verdict {
    verify(
        &CallbackRequest {
            method: "POST",
            url,
            headers,
            body: BODY,
            extra_ports: &[8443],
            other_urls: &[],
        },
        keys,
    )
}

fn round_trip(verdict: &Verdict, url: &str, headers: &[(String, String)]) -> Verdict {
    let received = Received { headers, url };
    let json = to_stored_json(verdict, &received);
    from_stored_json(&json, &received).expect("the stored form parses")
}

fn signed(token: &str, main: Option<&str>, form: Form) -> Vec<(String, String)> {
    let signing = SigningKeys {
        auth_token: AuthToken::new(token),
        main_auth_token: main.map(AuthToken::new),
    };
    signed_headers_with_nonces(
        "POST",
        URL,
        BODY,
        &signing,
        form,
        "11111111111111111111",
        "22222222222222222222",
    )
}

#[test]
fn a_valid_verdict_is_stored_in_well_under_half_the_bytes_and_reads_back() {
    let token = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
    let headers = signed(token, None, Form::Docs);
    let verdict = verdict_for(URL, &headers, &keys(&[token], &[]));
    assert_eq!(verdict.status, VerdictStatus::Valid);
    let full = serde_json::to_string(&verdict).unwrap();
    let stored = to_stored_json(
        &verdict,
        &Received {
            headers: &headers,
            url: URL,
        },
    );
    assert!(
        stored.len() * 100 < full.len() * 40,
        "{} of {} bytes: {stored}",
        stored.len(),
        full.len()
    );
    assert!(!stored.contains(token), "{stored}");
    assert_eq!(round_trip(&verdict, URL, &headers), verdict);
}

#[test]
fn rows_in_the_full_form_read_unchanged() {
    let token = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
    let headers = signed(token, None, Form::Docs);
    for verdict in [
        verdict_for(URL, &headers, &keys(&[token], &[])),
        verdict_for(URL, &headers, &keys(&["wrong-token-0123456789"], &[])),
        verdict_for(URL, &[], &keys(&[token], &[])),
    ] {
        let full = serde_json::to_string(&verdict).unwrap();
        let received = Received {
            headers: &headers,
            url: URL,
        };
        assert_eq!(from_stored_json(&full, &received).unwrap(), verdict);
    }
}

#[test]
fn a_verdict_that_does_not_match_its_request_keeps_every_field() {
    let token = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
    let headers = signed(token, None, Form::Docs);
    let verdict = verdict_for(URL, &headers, &keys(&[token], &[]));
    // Stored with other headers and another URL: nothing can be rebuilt from them, and
    // nothing may be rebuilt wrongly.
    let other = signed(token, Some("MAINtoken0123456789"), Form::Sdk);
    let received = Received {
        headers: &other[1..],
        url: "https://elsewhere.example/x?y=1",
    };
    let json = to_stored_json(&verdict, &received);
    assert_eq!(from_stored_json(&json, &received).unwrap(), verdict);
}

#[test]
fn an_unreadable_stored_verdict_is_an_error_not_a_panic() {
    let received = Received {
        headers: &[],
        url: URL,
    };
    assert!(from_stored_json("{\"status\":", &received).is_err());
    assert!(from_stored_json("[]", &received).is_err());
}

fn header_edit() -> impl Strategy<Value = u8> {
    0..8u8
}

/// Headers as senders really get them wrong: repeated, emptied, dropped, lower-cased.
fn edit(headers: &mut Vec<(String, String)>, how: u8, index: usize) {
    if headers.is_empty() {
        return;
    }
    let i = index % headers.len();
    match how {
        0 => {}
        1 => {
            let again = headers[i].clone();
            headers.push(again);
        }
        2 => headers[i].1.clear(),
        3 => {
            headers.remove(i);
        }
        4 => headers[i].0 = headers[i].0.to_ascii_lowercase(),
        5 => headers[i].1 = format!(" {} ", headers[i].1),
        6 => headers[i].1.push_str(",extra=="),
        _ => headers.push(("X-Vobiz-Signature".into(), "bm90IGEgc2lnbmF0dXJl".into())),
    }
}

proptest! {
    #[test]
    fn every_verdict_reads_back_exactly(
        token in "[A-Za-z0-9]{8,40}",
        main in proptest::option::of("[A-Za-z0-9]{8,40}"),
        sdk: bool,
        right_key: bool,
        configured_main: bool,
        edits in proptest::collection::vec((header_edit(), 0..16usize), 0..4),
        url_variant in 0..3u8,
    ) {
        let form = if sdk { Form::Sdk } else { Form::Docs };
        let mut headers = signed(&token, main.as_deref(), form);
        for (how, index) in edits {
            edit(&mut headers, how, index);
        }
        let key = if right_key { token.clone() } else { format!("{token}x") };
        let mains: Vec<&str> = match (configured_main, &main) {
            (true, Some(main)) => vec![main.as_str()],
            _ => vec![],
        };
        let url = match url_variant {
            0 => URL.to_string(),
            1 => URL.to_string(),
            _ => format!("{URL}?a=1&b=two"),
        };
        let verdict = verdict_for(&url, &headers, &keys(&[&key], &mains));
        prop_assert_eq!(round_trip(&verdict, &url, &headers), verdict);
    }
}
