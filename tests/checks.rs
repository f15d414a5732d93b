//! The Vobiz checks through the real listener: a TLS client (as Vobiz) → the listener → a real
//! upstream; findings are computed in the pipeline, stored, read back and printed in the JSON
//! log line.

mod common;

use common::*;
use vobiz_tunnel::exchange::Flag;
use vobiz_tunnel::pipeline::ExchangeEvent;

/// The next finished exchange published by the pipeline.
async fn next_finished(
    events: &mut tokio::sync::broadcast::Receiver<ExchangeEvent>,
) -> std::sync::Arc<vobiz_tunnel::exchange::Exchange> {
    within(async {
        loop {
            if let Ok(ExchangeEvent::Finished(exchange)) = events.recv().await {
                return exchange;
            }
        }
    })
    .await
}

#[tokio::test]
async fn an_html_answer_to_an_answer_callback_is_flagged_stored_and_logged() {
    let upstream = upstream(Reply {
        content_type: "text/html; charset=utf-8",
        body: "<Response><Speak>hello</Speak></Response>",
        ..Reply::default()
    })
    .await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let mut events = harness.tunnel.events.subscribe();
    let url = harness.url("/vobiz/answer");
    let body = "CallUUID=a1&Direction=inbound&Event=StartApp&From=9198";
    let request = form_post(
        &harness,
        "/vobiz/answer",
        body,
        &vobiz_headers(&url, TOKEN, None),
    );
    let answer = harness.client().send(request).await;
    assert_eq!(answer.status, 200, "a check never changes the answer");

    let published = next_finished(&mut events).await;
    let rules: Vec<&str> = published.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, vec!["xml-content-type"], "{:?}", published.findings);

    let id = published.id.expect("recorded");
    let stored = harness.recorded(id).await;
    assert_eq!(
        stored.findings, published.findings,
        "the store round-trips findings"
    );

    let line: serde_json::Value =
        serde_json::from_str(&vobiz_tunnel::output::exchange_json_line(&published)).unwrap();
    assert_eq!(line["findings"][0]["rule"], "xml-content-type");
    assert_eq!(line["findings"][0]["severity"], "error");
    assert!(line["findings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("text/html"));

    // `list` says so too, as the live line does: `⚠ 1`, and the findings in its JSON.
    let summaries = harness.reader().latest(1).unwrap();
    let listed = vobiz_tunnel::output::text_line(&summaries[0], time::UtcOffset::UTC);
    assert!(listed.ends_with("⚠ 1"), "{listed}");
    let listed: serde_json::Value =
        serde_json::from_str(&vobiz_tunnel::output::json_line(&summaries[0])).unwrap();
    assert_eq!(listed["findings"][0]["rule"], "xml-content-type");
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn a_hangup_delivered_twice_with_a_new_nonce_is_a_duplicate_of_the_first() {
    let upstream = upstream(Reply {
        content_type: "text/plain",
        body: "ok",
        ..Reply::default()
    })
    .await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let mut events = harness.tunnel.events.subscribe();
    let url = harness.url("/vobiz/hangup");
    let client = harness.client();
    let send = |seed: u64| {
        let headers = vobiz_headers_fresh(&url, TOKEN, seed);
        client.send(form_post(&harness, "/vobiz/hangup", HANGUP_BODY, &headers))
    };

    assert_eq!(send(1).await.status, 200);
    let first = next_finished(&mut events).await;
    assert!(first.findings.is_empty(), "{:?}", first.findings);
    assert!(!first.has_flag(Flag::Duplicate));

    assert_eq!(send(2).await.status, 200, "a duplicate is still forwarded");
    let second = next_finished(&mut events).await;
    assert!(second.has_flag(Flag::Duplicate), "{:?}", second.flags);
    assert!(
        !second.has_flag(Flag::NonceReused),
        "a new nonce, not a replay"
    );
    let first_id = first.id.expect("recorded");
    let duplicate = second
        .findings
        .iter()
        .find(|f| f.rule == "duplicate-delivery")
        .expect("a duplicate-delivery finding");
    assert!(
        duplicate.message.contains(&format!("#{first_id}")),
        "{}",
        duplicate.message
    );

    let stored = harness.recorded(second.id.expect("recorded")).await;
    assert!(stored.has_flag(Flag::Duplicate));
    assert_eq!(stored.findings, second.findings);
    harness.tunnel.shutdown().await;
}
