//! Delivery rules: how the exchange went from Vobiz's side — was it a retry or a duplicate,
//! was the answer too slow, will a failed status callback be retried, was it signed, did it
//! come from Vobiz's published addresses.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use super::kind::repeats_in_a_loop;
use super::{callback_kind, CallbackKind, Context, DeliveryTracker, Finding, Severity};
use crate::exchange::{Exchange, Flag, Outcome, SLOW_AFTER_MS};
use crate::signature::VerdictStatus;

/// Rule names (the contract: stored, printed, filtered by eye).
pub const DUPLICATE_DELIVERY: &str = "duplicate-delivery";
pub const SLOW_ANSWER: &str = "slow-answer";
pub const STATUS_CALLBACK_FAILED: &str = "status-callback-failed";
pub const UNSIGNED: &str = "unsigned";
pub const OUTSIDE_VOBIZ_SOURCES: &str = "outside-vobiz-sources";

/// Fields that tell two callbacks of the same call and `Event` apart (a second recording, a
/// second B leg, another digit press); everything else may legitimately differ on a retry.
const IDENTIFYING_FIELDS: &[&str] = &[
    "RecordingID",
    "DialBLegUUID",
    "DialAction",
    "Digits",
    "Speech",
    "ConferenceAction",
    "ConferenceMemberID",
    "StreamID",
    "Name",
    "SequenceNumber",
    "recording_id",
    "transcription_id",
];

/// The identity of a callback (path, `CallUUID`, `Event` and the identifying fields, and the
/// nonce of one that may repeat in a loop), hashed as the tracker remembers it. `None` for
/// requests that are not a call's callback (no `CallUUID`, unless a `transcription_id` names
/// what it is about), or that this tool sent itself (replays).
pub fn delivery_key(exchange: &Exchange, tracker: &DeliveryTracker) -> Option<u64> {
    // A transcription's callback names no call, but its transcription (an identifying
    // field) is one of a kind.
    let call = match exchange.call_uuid.as_deref() {
        Some(call) => call,
        None => {
            exchange.request.form_field("transcription_id")?;
            ""
        }
    };
    if exchange.replay_of.is_some()
        || exchange.has_flag(Flag::Replay)
        || exchange.has_flag(Flag::Imported)
    {
        return None;
    }
    // Hashed part by part, never joined into a string: this runs for every request.
    let mut key = tracker.key_hasher();
    exchange.request.path().hash(&mut key);
    call.hash(&mut key);
    exchange.event.as_deref().unwrap_or("").hash(&mut key);
    if repeats_in_a_loop(exchange) {
        // A menu's Gather action or a Redirect may come again as a new callback: only the
        // same request again (its nonce too) is a duplicate of it, which an unsigned one
        // cannot be told to be.
        exchange.verdict.nonce.as_deref()?.hash(&mut key);
    }
    // One pass over the raw pairs, decoding only the identifying fields (decoding the whole
    // form was a tenth of the proxy's CPU).
    for (name, value) in exchange.request.raw_form_pairs() {
        if let Some(field) = IDENTIFYING_FIELDS.iter().find(|f| f.as_bytes() == name) {
            field.hash(&mut key);
            crate::exchange::decode_form_component(value).hash(&mut key);
        }
    }
    Some(key.finish())
}

/// `duplicate-delivery`: the same callback (its [`delivery_key`] is `key`) arrived earlier
/// within the tracker's window — a Vobiz retry (new nonce) or the same request again (same
/// nonce).
pub fn duplicate_delivery(exchange: &Exchange, context: &Context, key: u64) -> Option<Finding> {
    let earlier = context.tracker.observe(
        key,
        exchange.id,
        exchange.timings.received_us,
        exchange.verdict.nonce.as_deref(),
    )?;
    let which = earlier
        .id
        .map_or("an earlier exchange".to_string(), |id| format!("#{id}"));
    // Saturating: imported exchanges carry whatever timestamps their HAR file said.
    let after = (exchange.timings.received_us)
        .saturating_sub(earlier.received_us)
        .max(0) as f64
        / 1e6;
    let nonce = if earlier.same_nonce {
        "same nonce"
    } else {
        "new nonce"
    };
    Some(Finding::new(
        DUPLICATE_DELIVERY,
        Severity::Warning,
        format!(
            "duplicate of {which} ({after:.1} s earlier; same CallUUID, Event and identifying \
             fields, {nonce}): a Vobiz retry or a duplicate delivery; make the handler idempotent"
        ),
    ))
}

/// `slow-answer`: the exchange took more than 3 s; Vobiz would have given up (and retried).
/// Not when the sender's request set the pace (a body that stalled): nothing was slow to
/// answer then.
pub fn slow_answer(exchange: &Exchange, _: &Context) -> Option<Finding> {
    if exchange.outcome.sender_set_the_pace() {
        return None;
    }
    let ms = exchange.timings.duration_ms()?;
    (ms > SLOW_AFTER_MS).then(|| {
        Finding::new(
            SLOW_ANSWER,
            Severity::Warning,
            format!(
                "answered after {:.1} s: Vobiz would have given up (it waits about 3 s)",
                ms / 1000.0
            ),
        )
    })
}

/// `status-callback-failed`: a status callback (Hangup, Ring, RecordStop, Dial/Conference/
/// Stream status, ...) got no 2xx answer, so Vobiz will retry it.
pub fn status_callback_failed(exchange: &Exchange, _: &Context) -> Option<Finding> {
    let CallbackKind::Status(name) = callback_kind(exchange) else {
        return None;
    };
    // "the Hangup status callback", but "the Record API callback".
    let callback = match name.ends_with("callback") {
        true => format!("the {name}"),
        false => format!("the {name} status callback"),
    };
    if exchange.status().is_none() && exchange.outcome == Outcome::Pending {
        return None;
    }
    status_answer_finding(&callback, exchange.status())
}

/// What a status callback's answer `status` (`None`: none came) means to Vobiz, said of
/// `callback` ("the Hangup status callback"); `None` for 200. Shared with `trigger`.
pub fn status_answer_finding(callback: &str, status: Option<u16>) -> Option<Finding> {
    let (severity, answer) = match status {
        Some(200) => return None,
        // Vobiz documents 200 and retries "non-200"; whether another success counts is not
        // documented, so it is worth knowing rather than an error.
        Some(status) if (200..300).contains(&status) => (
            Severity::Warning,
            format!("got {status}, not the 200 Vobiz documents: it may retry it; answer 200"),
        ),
        Some(status) => (
            Severity::Error,
            format!("got {status}: Vobiz will retry it (up to 3 times); answer 200"),
        ),
        None => (
            Severity::Error,
            "got no answer: Vobiz will retry it (up to 3 times); answer 200".to_string(),
        ),
    };
    Some(Finding::new(
        STATUS_CALLBACK_FAILED,
        severity,
        format!("{callback} {answer}"),
    ))
}

/// `unsigned`: a call's callback without any `X-Vobiz-Signature-*` header.
pub fn unsigned(exchange: &Exchange, _: &Context) -> Option<Finding> {
    let looks_vobiz = exchange.call_uuid.is_some() || exchange.event.is_some();
    (exchange.verdict.status == VerdictStatus::Unsigned && looks_vobiz).then(|| {
        Finding::new(
            UNSIGNED,
            Severity::Warning,
            "unsigned callback: anyone can forge it; configure auth credentials on the callback \
             URL so that Vobiz signs it",
        )
    })
}

/// `outside-vobiz-sources`: the sender's address is not in the allow-list (only when
/// enabled; a warning, never a block — the list is shared by every Vobiz customer).
pub fn outside_vobiz_sources(exchange: &Exchange, context: &Context) -> Option<Finding> {
    let allowed = context.allowed_sources.as_ref()?;
    let text = exchange.request.client_addr.as_deref()?;
    let ip = text
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()?;
    if allowed.iter().any(|block| block.contains(ip)) {
        return None;
    }
    Some(Finding::new(
        OUTSIDE_VOBIZ_SOURCES,
        Severity::Warning,
        format!("sent from {ip}, outside Vobiz's published callback addresses"),
    ))
}
