//! The real `vobiz-tunnel trigger` binary: exit statuses, verdicts through the listener,
//! GET with `--param`, unsigned and bad signatures, failing and slow servers.

use std::time::Duration;

use super::common::{self, Reply, MAIN_TOKEN, TOKEN};
use super::{form, run_binary, verdict};
use vobiz_tunnel::signature::VerdictStatus;

#[tokio::test]
async fn answer_and_hangup_through_the_listener() {
    let upstream = common::upstream(Reply::default()).await;
    let harness = common::Harness::with_forward(&upstream.url()).await;
    let certs = harness.dir.path().join("certs");
    let certs = certs.to_str().unwrap();
    for (kind, path) in [("answer", "/answer"), ("hangup", "/vobiz/hangup")] {
        let url = harness.url(path);
        let (code, out, err) = run_binary(&[
            "trigger",
            kind,
            "--to",
            &url,
            "--certs-dir",
            certs,
            "--auth-token",
            TOKEN,
        ])
        .await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("200 in ") && out.contains("\nOK: Vobiz would accept this answer"),
            "{out}"
        );
        let exchange = harness.last_recorded().await;
        assert_eq!(exchange.verdict.status, VerdictStatus::Valid);
    }
    // Without --certs-dir the listener's own dev CA is unknown: the TLS error is explained.
    let (code, out, _) = run_binary(&[
        "trigger",
        "hangup",
        "--to",
        &harness.url("/x"),
        "--certs-dir",
        "/nonexistent",
        "--auth-token",
        TOKEN,
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        out.contains("certificate is not trusted: no dev CA found at /nonexistent/dev-ca.pem"),
        "{out}"
    );
    // --insecure accepts it.
    let (code, out, _) = run_binary(&[
        "trigger",
        "hangup",
        "--to",
        &harness.url("/x"),
        "--certs-dir",
        "/nonexistent",
        "--insecure",
        "--auth-token",
        TOKEN,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn get_with_params_signs_the_url_without_the_query() {
    let mut upstream = common::upstream(Reply::default()).await;
    let url = format!("{}/answer", upstream.url());
    let (code, out, err) = run_binary(&[
        "trigger",
        "answer",
        "--to",
        &url,
        "--method",
        "GET",
        "--param",
        "From=919811112222",
        "--param",
        "X-VH-Tenant=acme",
        "--auth-token",
        TOKEN,
        "--main-auth-token",
        MAIN_TOKEN,
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["status"], 200);
    let seen = upstream.next().await;
    assert_eq!(seen.method, "GET");
    assert!(seen.body.is_empty());
    let (path, query) = seen.uri.split_once('?').unwrap();
    assert_eq!(path, "/answer");
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    assert!(fields.contains(&("From".into(), "919811112222".into())));
    assert!(fields.contains(&("X-VH-Tenant".into(), "acme".into())));
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
    let full = format!("{}{}", upstream.url(), seen.uri);
    assert_eq!(
        verdict("GET", &full, &seen.headers, b""),
        VerdictStatus::Valid
    );
}

#[tokio::test]
async fn unsigned_bad_and_missing_tokens() {
    let upstream = common::upstream(Reply::default()).await;
    let harness = common::Harness::with_forward(&upstream.url()).await;
    let certs = harness.dir.path().join("certs");
    let certs = certs.to_str().unwrap();
    let url = harness.url("/vobiz/hangup");
    // The local server behind the listener accepts anything: a forgery test fails.
    for (flag, verdict, sent) in [
        (
            "--unsigned",
            VerdictStatus::Unsigned,
            "a callback with no signature",
        ),
        (
            "--bad-signature",
            VerdictStatus::Invalid,
            "a callback whose signature does not verify",
        ),
    ] {
        let (code, out, _) = run_binary(&[
            "trigger",
            "hangup",
            "--to",
            &url,
            "--certs-dir",
            certs,
            "--auth-token",
            TOKEN,
            flag,
        ])
        .await;
        assert_eq!(code, 1, "{flag}: the server answered 200\n{out}");
        assert!(
            out.contains(&format!(
                "FAILED: HTTP 200: your server accepted {sent}; it must refuse it (401 or 403)"
            )),
            "{out}"
        );
        assert_eq!(harness.last_recorded().await.verdict.status, verdict);
    }

    let (code, _, err) =
        run_binary(&["trigger", "hangup", "--to", &url, "--certs-dir", certs]).await;
    assert_eq!(code, 0);
    assert!(
        err.contains("no auth token") && err.contains("unsigned"),
        "{err}"
    );
    assert_eq!(
        harness.last_recorded().await.verdict.status,
        VerdictStatus::Unsigned
    );
}

#[tokio::test]
async fn failing_slow_and_invalid_answers_exit_non_zero() {
    let failing = common::upstream(Reply {
        status: 500,
        body: "boom",
        ..Reply::default()
    })
    .await;
    let (code, out, _) =
        run_binary(&["trigger", "hangup", "--to", &format!("{}/h", failing.url())]).await;
    assert_eq!(code, 1);
    assert!(out.contains("500") && out.contains("FAILED"), "{out}");

    let slow = common::upstream(Reply {
        delay: Duration::from_millis(400),
        ..Reply::default()
    })
    .await;
    let to = format!("{}/h", slow.url());
    let (code, out, _) =
        run_binary(&["trigger", "hangup", "--to", &to, "--slow-after-ms", "200"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("slower than 200 ms"), "{out}");
    let (code, _, _) =
        run_binary(&["trigger", "hangup", "--to", &to, "--slow-after-ms", "5000"]).await;
    assert_eq!(code, 0);

    let html = common::upstream(Reply {
        body: "<html><body>hi",
        content_type: "text/html",
        ..Reply::default()
    })
    .await;
    let (code, out, _) =
        run_binary(&["trigger", "answer", "--to", &format!("{}/a", html.url())]).await;
    assert_eq!(code, 1);
    assert!(out.contains("Content-Type text/html"), "{out}");
    // A hangup's answer is ignored by Vobiz: no XML needed.
    let (code, _, _) =
        run_binary(&["trigger", "hangup", "--to", &format!("{}/a", html.url())]).await;
    assert_eq!(code, 0);

    // Well-formed XML still fails when labelled as HTML: Vobiz does not parse it.
    let labelled_html = common::upstream(Reply {
        content_type: "text/html; charset=utf-8",
        ..Reply::default()
    })
    .await;
    let (code, out, _) = run_binary(&[
        "trigger",
        "answer",
        "--to",
        &format!("{}/a", labelled_html.url()),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        out.contains("FAILED: xml-content-type: Content-Type text/html: Vobiz parses only"),
        "{out}"
    );
    let broken = common::upstream(Reply {
        body: "<Response><Speak>unclosed",
        ..Reply::default()
    })
    .await;
    let (code, out, _) =
        run_binary(&["trigger", "answer", "--to", &format!("{}/a", broken.url())]).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("FAILED: xml-well-formed: not well-formed XML"),
        "{out}"
    );
    // A wait past any use is refused with the flag's name (it used to panic).
    let to = format!("{}/a", broken.url());
    let (code, _, err) = run_binary(&["trigger", "answer", "--to", &to, "--timeout", "1e20"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--timeout") && err.contains("at most 86400"),
        "{err}"
    );
}

/// What the listener's checks make of an answer is what `trigger` says of it, in the same
/// words: an error fails the trigger, a warning is printed and passes.
#[tokio::test]
async fn trigger_says_of_an_answer_what_the_listener_records() {
    for (body, code, rule) in [
        (
            r#"<Response><Record action="ftp://x/y"/></Response>"#,
            1,
            "xml-action-urls",
        ),
        (
            r#"<Response><GetDigits action="/g"><Speak>hi</Speak></GetDigits></Response>"#,
            0,
            "xml-known-elements",
        ),
    ] {
        let upstream = common::upstream(Reply {
            body,
            ..Reply::default()
        })
        .await;
        let harness = common::Harness::with_forward(&upstream.url()).await;
        let certs = harness.dir.path().join("certs");
        let (status, out, err) = run_binary(&[
            "trigger",
            "answer",
            "--to",
            &harness.url("/answer"),
            "--certs-dir",
            certs.to_str().unwrap(),
            "--auth-token",
            TOKEN,
        ])
        .await;
        assert_eq!(status, code, "{body}: {out}{err}");
        let recorded = harness.last_recorded().await;
        let finding = recorded
            .findings
            .iter()
            .find(|f| f.rule == rule)
            .unwrap_or_else(|| panic!("{body}: {:?}", recorded.findings));
        let said = format!("{}: {}", finding.rule, finding.message);
        assert!(out.contains(&said), "{body}: {said} not in\n{out}");
        match code {
            0 => assert!(out.contains("\nwarning xml-known-elements: <GetDigits>")),
            _ => assert!(out.contains("\nFAILED: xml-action-urls: <Record action>")),
        }
    }
}

#[tokio::test]
async fn public_url_is_what_gets_signed() {
    let mut upstream = common::upstream(Reply::default()).await;
    // A URL with a path is signed as given; a bare origin takes the path of --to, which is
    // what `listen --public-url` with the same value verifies against.
    for (public, signed) in [
        (
            "https://hooks.example.com/vobiz/hangup",
            "https://hooks.example.com/vobiz/hangup",
        ),
        (
            "https://hooks.example.com",
            "https://hooks.example.com/vobiz/hangup",
        ),
    ] {
        let (code, _, _) = run_binary(&[
            "trigger",
            "hangup",
            "--to",
            &format!("{}/vobiz/hangup", upstream.url()),
            "--public-url",
            public,
            "--auth-token",
            TOKEN,
        ])
        .await;
        assert_eq!(code, 0);
        let seen = upstream.next().await;
        assert_eq!(
            verdict("POST", signed, &seen.headers, &seen.body),
            VerdictStatus::Valid,
            "{public}"
        );
        assert!(!form(&seen).is_empty());
    }
}

/// A callback carries one signature: of several tokens (as `listen` takes during a rotation)
/// trigger signs with the first, and its help and a notice say so without showing a token.
#[tokio::test]
async fn of_several_tokens_the_first_signs() {
    let (code, help, _) = run_binary(&["trigger", "hangup", "--help"]).await;
    assert_eq!(code, 0);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("trigger signs with the first only"), "{help}");
    assert!(!help.contains("to accept several"), "{help}");

    let mut upstream = common::upstream(Reply::default()).await;
    let to = format!("{}/vobiz/hangup", upstream.url());
    let other = "OTHERtokenNOTreal00000000000000000000";
    let (code, out, err) = run_binary(&[
        "trigger",
        "hangup",
        "--to",
        &to,
        "--auth-token",
        TOKEN,
        "--auth-token",
        other,
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("signing with the first of 2 auth tokens (TEST…XYZ)"),
        "{err}"
    );
    assert!(!err.contains(TOKEN) && !err.contains(other), "{err}");
    let seen = upstream.next().await;
    assert_eq!(
        verdict("POST", &to, &seen.headers, &seen.body),
        VerdictStatus::Valid
    );
}

/// A stream's status callback echoes the URL and method it was configured with (the URL
/// signed), and its ServiceURL is a WebSocket at that host, not fixed localhost addresses.
#[tokio::test]
async fn stream_status_echoes_its_own_urls() {
    let mut upstream = common::upstream(Reply::default()).await;
    let to = format!("{}/my/stream-cb", upstream.url());
    let field = |fields: &[(String, String)], key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {fields:?}"))
    };
    let (code, out, err) = run_binary(&[
        "trigger",
        "stream-status",
        "--to",
        &to,
        "--public-url",
        "https://hooks.example.com",
        "--auth-token",
        TOKEN,
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let fields = form(&upstream.next().await);
    assert_eq!(
        field(&fields, "status_callback_url"),
        "https://hooks.example.com/my/stream-cb"
    );
    assert_eq!(field(&fields, "status_callback_method"), "POST");
    assert_eq!(
        field(&fields, "ServiceURL"),
        "wss://hooks.example.com/stream"
    );

    let (code, out, err) = run_binary(&[
        "trigger",
        "stream-status",
        "--to",
        &to,
        "--method",
        "GET",
        "--auth-token",
        TOKEN,
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let seen = upstream.next().await;
    let query = seen.uri.split_once('?').unwrap().1;
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    assert_eq!(field(&fields, "status_callback_url"), to);
    assert_eq!(field(&fields, "status_callback_method"), "GET");
    assert_eq!(
        field(&fields, "ServiceURL"),
        format!("ws://{}/stream", upstream.addr)
    );
}

/// A forgery (--unsigned, --bad-signature) tests that the server refuses it: 400, 401 or 403
/// passes; a server that fails (5xx), or a URL that is wrong (404), has not refused it.
#[tokio::test]
async fn a_forgery_refused_passes() {
    let refusing = common::upstream(Reply {
        status: 403,
        content_type: "text/plain",
        body: "forbidden",
        ..Reply::default()
    })
    .await;
    let to = format!("{}/vobiz/answer", refusing.url());
    for (flag, sent) in [
        ("--unsigned", "a callback with no signature"),
        (
            "--bad-signature",
            "a callback whose signature does not verify",
        ),
    ] {
        let (code, out, err) = run_binary(&[
            "trigger",
            "answer",
            "--to",
            &to,
            "--auth-token",
            TOKEN,
            flag,
        ])
        .await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!(
                "\nOK: your server refused {sent} (HTTP 403), as it should"
            )),
            "{out}"
        );
    }
    let (code, out, _) = run_binary(&[
        "trigger",
        "answer",
        "--to",
        &to,
        "--auth-token",
        TOKEN,
        "--bad-signature",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&json["ok"], &json["expected"]),
        (&true.into(), &"refusal".into())
    );

    let failing = common::upstream(Reply {
        status: 500,
        ..Reply::default()
    })
    .await;
    let (code, out, _) = run_binary(&[
        "trigger",
        "hangup",
        "--to",
        &format!("{}/h", failing.url()),
        "--unsigned",
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED: HTTP 500: your server did not refuse a callback with no signature"),
        "{out}"
    );
    // A mistyped URL (404) says nothing about the signature check: it does not pass.
    let missing = common::upstream(Reply {
        status: 404,
        ..Reply::default()
    })
    .await;
    let to = format!("{}/typo", missing.url());
    let (code, out, _) = run_binary(&["trigger", "hangup", "--to", &to, "--bad-signature"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED: HTTP 404: the URL or method looks wrong"),
        "{out}"
    );
}
