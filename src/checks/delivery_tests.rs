//! One test per delivery rule, both sides: it fires on the case it is for, and stays quiet on
//! the ordinary one. Also the fixture the XML tests share.

use bytes::Bytes;

use super::delivery::*;
use super::{findings, on_received, vobiz_sources, Context, Severity};
use crate::exchange::{Exchange, Flag, Headers, Outcome, RequestRecord, ResponseRecord};
use crate::signature::{Verdict, VerdictStatus};

/// A form-posted callback to `path`, signed (valid), from a Vobiz address, answered 200 in
/// 120 ms with an empty body.
pub(crate) fn callback(path: &str, body: &str) -> Exchange {
    let request = RequestRecord {
        method: "POST".into(),
        target: path.into(),
        http_version: "HTTP/1.1".into(),
        public_url: format!("https://hooks.example.com{path}"),
        headers: Headers(vec![(
            "content-type".into(),
            b"application/x-www-form-urlencoded".to_vec(),
        )]),
        body: Bytes::from(body.to_string()),
        client_addr: Some("15.206.6.156:40112".into()),
        ..RequestRecord::default()
    };
    let verdict = Verdict {
        nonce: Some("12345678901234567890".into()),
        signature: Some("sig".into()),
        ..Verdict::bare(VerdictStatus::Valid)
    };
    let mut exchange = Exchange::received(request, verdict, 1_000_000);
    exchange.id = Some(1);
    answer(&mut exchange, 200, "text/plain", "");
    exchange
}

/// Replaces the answer, keeping the 120 ms duration.
pub(crate) fn answer(exchange: &mut Exchange, status: u16, content_type: &str, body: &str) {
    exchange.answered(
        ResponseRecord {
            status,
            headers: Headers(vec![(
                "content-type".into(),
                content_type.as_bytes().to_vec(),
            )]),
            body: Bytes::from(body.to_string()),
        },
        exchange.timings.received_us + 100_000,
    );
    exchange.timings.done_us = Some(exchange.timings.received_us + 120_000);
}

const HANGUP: &str = "CallUUID=c1&Event=Hangup&HangupCause=NORMAL_CLEARING";

fn rules(exchange: &Exchange, context: &Context) -> Vec<String> {
    findings(exchange, context)
        .into_iter()
        .map(|f| f.rule)
        .collect()
}

#[test]
fn duplicate_delivery_fires_on_a_second_delivery_with_a_new_nonce() {
    let context = Context::default();
    let first = callback("/hangup", HANGUP);
    assert!(on_received(&first, &context).findings.is_empty());
    let mut retry = callback("/hangup", HANGUP);
    retry.id = Some(2);
    retry.timings.received_us += 4_000_000;
    retry.verdict.nonce = Some("99999999999999999999".into());
    let found = on_received(&retry, &context).findings;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule, DUPLICATE_DELIVERY);
    assert!(found[0].message.contains("#1"), "{}", found[0].message);
    assert!(
        found[0].message.contains("new nonce"),
        "{}",
        found[0].message
    );
}

/// A transcription's callback names no call: its transcription id tells a retry apart.
#[test]
fn a_transcription_sent_twice_is_a_duplicate() {
    let context = Context::default();
    let body = "recording_id=r1&transcription_id=t1&transcription=hello";
    let first = callback("/transcribed", body);
    assert!(on_received(&first, &context).findings.is_empty());
    let mut again = callback("/transcribed", body);
    again.id = Some(2);
    again.timings.received_us += 3_000_000;
    let found = on_received(&again, &context).findings;
    assert_eq!(
        found.first().map(|f| f.rule.as_str()),
        Some(DUPLICATE_DELIVERY),
        "{found:?}"
    );
    let other = callback("/transcribed", "recording_id=r1&transcription_id=t2");
    assert!(
        on_received(&other, &context).findings.is_empty(),
        "another transcription"
    );
}

#[test]
fn a_first_delivery_written_after_its_receipt_is_named_by_its_retry() {
    // The pipeline writes an exchange at its end: at receipt it has no id yet.
    let context = Context::default();
    let mut first = callback("/hangup", HANGUP);
    first.id = None;
    let receipt = on_received(&first, &context);
    assert!(receipt.findings.is_empty());
    assert!(receipt.delivery.is_some());
    first.id = Some(41);
    super::identify(&first, receipt.delivery, &context);
    let mut retry = callback("/hangup", HANGUP);
    retry.id = None;
    retry.timings.received_us += 2_000_000;
    let found = on_received(&retry, &context).findings;
    assert!(found[0].message.contains("duplicate of #41"), "{found:?}");
}

#[test]
fn extreme_timestamps_do_not_overflow_the_duplicate_message() {
    // Imported exchanges carry whatever timestamps their file said: a "retry" stamped long
    // before its first delivery is still named, with no overflow on the way.
    let context = Context::default();
    let mut first = callback("/hangup", HANGUP);
    first.timings.received_us = i64::MAX;
    assert!(on_received(&first, &context).findings.is_empty());
    let mut retry = callback("/hangup", HANGUP);
    retry.timings.received_us = i64::MIN;
    let found = on_received(&retry, &context).findings;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.contains("0.0 s earlier"), "{found:?}");
}

#[test]
fn a_menu_key_pressed_again_is_no_duplicate_but_the_same_request_again_is() {
    let context = Context::default();
    for (path, body) in [
        ("/menu-choice", "CallUUID=c3&Digits=1&InputType=dtmf"),
        ("/again", "CallUUID=c3&Event=Redirect"),
    ] {
        let first = callback(path, body);
        assert!(on_received(&first, &context).findings.is_empty());
        let mut pressed_again = callback(path, body);
        pressed_again.timings.received_us += 6_000_000;
        pressed_again.verdict.nonce = Some("77777777777777777777".into());
        assert!(
            on_received(&pressed_again, &context).findings.is_empty(),
            "{path}: a loop, not a retry"
        );
        let mut resent = pressed_again.clone();
        resent.timings.received_us += 1_000_000;
        let found = on_received(&resent, &context).findings;
        assert_eq!(found.len(), 1, "{path}: the same request again: {found:?}");
        assert!(found[0].message.contains("same nonce"), "{found:?}");
        // Unsigned, a resend cannot be told from a new press: not reported.
        let mut unsigned = pressed_again.clone();
        unsigned.verdict.nonce = None;
        assert!(on_received(&unsigned, &context).findings.is_empty());
        assert!(on_received(&unsigned, &context).findings.is_empty());
    }
}

#[test]
fn duplicate_delivery_is_quiet_for_other_fields_other_calls_and_replays() {
    let context = Context::default();
    let recording = |id: &str| {
        callback(
            "/rec",
            &format!("CallUUID=c1&Event=RecordStop&RecordingID={id}"),
        )
    };
    assert!(on_received(&recording("r1"), &context).findings.is_empty());
    assert!(on_received(&recording("r2"), &context).findings.is_empty());
    assert!(
        on_received(&callback("/hangup", "CallUUID=c2&Event=Hangup"), &context)
            .findings
            .is_empty()
    );
    let mut replay = recording("r1");
    replay.replay_of = Some(1);
    replay.add_flag(Flag::Replay);
    assert!(on_received(&replay, &context).findings.is_empty());
    assert!(on_received(&callback("/x", "no=call"), &context)
        .findings
        .is_empty());
}

#[test]
fn slow_answer_fires_after_three_seconds_only() {
    let context = Context::default();
    let mut slow = callback("/hangup", HANGUP);
    assert!(!rules(&slow, &context).contains(&SLOW_ANSWER.to_string()));
    slow.timings.done_us = Some(slow.timings.received_us + 3_500_000);
    let found = findings(&slow, &context);
    let finding = found.iter().find(|f| f.rule == SLOW_ANSWER);
    assert!(finding.is_some_and(|f| f.message.contains("would have given up")));
    // A sender that took that long to send its body was not answered slowly.
    slow.outcome = Outcome::ClientError;
    assert!(!rules(&slow, &context).contains(&SLOW_ANSWER.to_string()));
}

#[test]
fn status_callback_failed_fires_on_a_non_2xx_status_answer() {
    let context = Context::default();
    let mut failed = callback("/hangup", HANGUP);
    answer(&mut failed, 500, "text/plain", "boom");
    let found = findings(&failed, &context);
    let finding = found.iter().find(|f| f.rule == STATUS_CALLBACK_FAILED);
    assert!(finding.is_some_and(|f| f.severity == Severity::Error
        && f.message.contains("Hangup")
        && f.message.contains("will retry")));
    let mut timeout = callback("/hangup", HANGUP);
    timeout.failed(Outcome::UpstreamTimeout, 504, "slow".into());
    assert!(rules(&timeout, &context).contains(&STATUS_CALLBACK_FAILED.to_string()));
}

#[test]
fn status_callback_failed_warns_on_a_success_other_than_200() {
    let context = Context::default();
    let mut no_content = callback("/hangup", HANGUP);
    answer(&mut no_content, 204, "text/plain", "");
    let found = findings(&no_content, &context);
    let finding = found.iter().find(|f| f.rule == STATUS_CALLBACK_FAILED);
    assert!(
        finding.is_some_and(|f| f.severity == Severity::Warning
            && f.message.contains("got 204, not the 200 Vobiz documents")),
        "{finding:?}"
    );
}

#[test]
fn a_status_callback_named_callback_is_not_called_a_callback_twice() {
    let context = Context::default();
    let mut record_api = callback("/recorded", "call_uuid=c1&recording_id=r1");
    answer(&mut record_api, 500, "text/plain", "boom");
    let found = findings(&record_api, &context);
    let message = &found
        .iter()
        .find(|f| f.rule == STATUS_CALLBACK_FAILED)
        .expect("fires")
        .message;
    assert!(
        message.starts_with("the Record API callback got 500"),
        "{message}"
    );
}

#[test]
fn status_callback_failed_is_quiet_on_200_and_on_answer_callbacks() {
    let context = Context::default();
    let ok = callback("/hangup", HANGUP);
    assert!(!rules(&ok, &context).contains(&STATUS_CALLBACK_FAILED.to_string()));
    let mut answer_callback = callback("/answer", "CallUUID=c1&Event=StartApp");
    answer(&mut answer_callback, 500, "text/plain", "boom");
    let found = rules(&answer_callback, &context);
    assert!(
        !found.contains(&STATUS_CALLBACK_FAILED.to_string()),
        "{found:?}"
    );
    assert!(found.contains(&"xml-status".to_string()), "{found:?}");
}

#[test]
fn unsigned_fires_on_an_unsigned_callback_only() {
    let context = Context::default();
    let signed = callback("/hangup", HANGUP);
    assert!(!rules(&signed, &context).contains(&UNSIGNED.to_string()));
    let mut bare = callback("/hangup", HANGUP);
    bare.verdict.status = VerdictStatus::Unsigned;
    assert!(rules(&bare, &context).contains(&UNSIGNED.to_string()));
    // A health check or a browser is not a Vobiz callback.
    let mut probe = callback("/health", "");
    probe.verdict.status = VerdictStatus::Unsigned;
    assert!(!rules(&probe, &context).contains(&UNSIGNED.to_string()));
}

#[test]
fn outside_vobiz_sources_fires_only_when_enabled_and_outside() {
    let enabled = Context::new(true);
    assert_eq!(enabled.allowed_sources, Some(vobiz_sources()));
    let from_vobiz = callback("/hangup", HANGUP);
    assert!(!rules(&from_vobiz, &enabled).contains(&OUTSIDE_VOBIZ_SOURCES.to_string()));
    let mut foreign = callback("/hangup", HANGUP);
    foreign.request.client_addr = Some("203.0.113.9:5555".into());
    let found = findings(&foreign, &enabled);
    let finding = found.iter().find(|f| f.rule == OUTSIDE_VOBIZ_SOURCES);
    assert!(finding.is_some_and(|f| f.message.contains("203.0.113.9")));
    // Off by default: never a warning without the flag.
    assert!(!rules(&foreign, &Context::default()).contains(&OUTSIDE_VOBIZ_SOURCES.to_string()));
}

#[test]
fn an_ordinary_status_callback_has_no_findings() {
    assert!(findings(&callback("/hangup", HANGUP), &Context::new(true)).is_empty());
}
