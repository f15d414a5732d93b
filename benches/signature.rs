//! Signature verification and signing (`vobiz_tunnel::signature`), on a realistic ~700-byte
//! Vobiz Hangup callback for `https://localhost:8443/vobiz/hangup`.
//!
//! - `verify/valid_docs/1_token`: V1 + V2 + V3 (docs form) headers as `signed_headers` makes
//!   them, one auth token: the hot path of every proxied callback.
//! - `verify/valid_docs/3_tokens_last`: the same with two rotation tokens tried first.
//! - `verify/valid_docs/7_headers_auth_and_main`: also the MA-V2/MA-V3 headers, main token set.
//! - `verify/valid_sdk/1_token`: V3 signed in the Python SDK form (docs form fails first).
//! - `verify/invalid/wrong_token`: nothing verifies; the near-miss search runs to the end.
//! - `verify/invalid/port_mismatch`: signed for the URL without the port; the near-miss
//!   search finds "port removed" early and builds the explanation.
//! - `sign/signed_headers/{docs,sdk}`: `signed_headers` with auth + main tokens (7 headers).
//!
//! Run: `cargo bench --bench signature` (quick: `-- --warm-up-time 1 --measurement-time 3`).

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use vobiz_tunnel::signature::{
    signed_headers, verify, AuthToken, CallbackRequest, Form, Keys, SigningKeys, VerdictStatus,
};

use common::{MAIN_TOKEN, OTHER_TOKENS, TOKEN};

const PORT: u16 = 8443;

/// One received callback: its URL, headers (plain + signature) and body.
struct Callback {
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Callback {
    /// Signed for `signed_url` with the crate's own signing code, received at `:PORT`.
    fn new(signed_url: &str, form: Form, with_main: bool) -> Callback {
        let body = common::hangup_body(&common::call_uuid(1));
        let mut headers = common::plain_headers(&format!("localhost:{PORT}"), body.len());
        let mut signature = common::all_signature_headers(signed_url, &body, form, 1);
        if !with_main {
            signature.retain(|(name, _)| !name.contains("-MA-"));
        }
        headers.extend(signature);
        Callback {
            url: common::url(PORT),
            headers,
            body,
        }
    }

    fn request(&self) -> CallbackRequest<'_> {
        CallbackRequest {
            method: "POST",
            url: &self.url,
            headers: &self.headers,
            body: self.body.as_bytes(),
            // What the pipeline passes: the listener's port.
            extra_ports: &[PORT],
            other_urls: &[],
        }
    }

    /// Checks the fixture means what the bench name says before timing it.
    fn expect(&self, keys: &Keys, status: VerdictStatus) -> &Self {
        let verdict = verify(&self.request(), keys);
        assert_eq!(verdict.status, status, "{:?}", verdict.explanation);
        self
    }
}

fn bench_verify(c: &mut Criterion) {
    let url = common::url(PORT);
    let one = common::keys(&[TOKEN], &[]);
    let three = common::keys(&[OTHER_TOKENS[0], OTHER_TOKENS[1], TOKEN], &[]);
    let both = common::keys(&[TOKEN], &[MAIN_TOKEN]);
    let wrong = common::keys(&[OTHER_TOKENS[0]], &[]);

    let docs = Callback::new(&url, Form::Docs, false);
    let docs_ma = Callback::new(&url, Form::Docs, true);
    let sdk = Callback::new(&url, Form::Sdk, false);
    // Vobiz called the public URL without a port; the listener sees :8443.
    let no_port = Callback::new(
        &format!("https://localhost{}", common::PATH),
        Form::Docs,
        false,
    );

    let mut group = c.benchmark_group("verify");
    let mut case = |name: &str, callback: &Callback, keys: &Keys, status: VerdictStatus| {
        let request = callback.expect(keys, status).request();
        group.bench_function(name, |b| b.iter(|| verify(black_box(&request), keys)));
    };
    case("valid_docs/1_token", &docs, &one, VerdictStatus::Valid);
    case(
        "valid_docs/3_tokens_last",
        &docs,
        &three,
        VerdictStatus::Valid,
    );
    case(
        "valid_docs/7_headers_auth_and_main",
        &docs_ma,
        &both,
        VerdictStatus::Valid,
    );
    case("valid_sdk/1_token", &sdk, &one, VerdictStatus::Valid);
    case("invalid/wrong_token", &docs, &wrong, VerdictStatus::Invalid);
    case(
        "invalid/port_mismatch",
        &no_port,
        &one,
        VerdictStatus::Invalid,
    );
    group.finish();

    // The near-miss fixture must actually find its near miss, or it measures the wrong path.
    let verdict = verify(&no_port.request(), &one);
    assert!(verdict.would_match.is_some(), "{:?}", verdict.explanation);
}

fn bench_sign(c: &mut Criterion) {
    let url = common::url(PORT);
    let body = common::hangup_body(&common::call_uuid(1));
    let keys = SigningKeys {
        auth_token: AuthToken::new(TOKEN),
        main_auth_token: Some(AuthToken::new(MAIN_TOKEN)),
    };
    let mut group = c.benchmark_group("sign");
    for (name, form) in [
        ("signed_headers/docs", Form::Docs),
        ("signed_headers/sdk", Form::Sdk),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                signed_headers(
                    "POST",
                    black_box(&url),
                    black_box(body.as_bytes()),
                    &keys,
                    form,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verify, bench_sign);
criterion_main!(benches);
