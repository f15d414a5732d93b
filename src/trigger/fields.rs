//! The form bodies of the callback catalogue (spec §4): for each [`Kind`], the fields Vobiz
//! sends with values consistent with the call's [`CallFacts`] and the current [`Step`],
//! sorted by key in byte order as on the wire.

use super::catalogue::{uuid_v4, CallFacts, Fields, Kind, Step};

/// The form fields for `kind` at `step` of the call, sorted by key in byte order.
pub fn fields(kind: Kind, call: &CallFacts, step: &Step) -> Vec<(String, String)> {
    let answered = if call.outbound() {
        "in-progress"
    } else {
        "ringing"
    };
    let mut f = match kind {
        Kind::Answer => {
            let mut f = call.standard(answered);
            f.extend([("Event", "StartApp".into()), ("BillRate", "0.00500".into())]);
            if !call.outbound() {
                f.extend([("CountryCode", String::new()), ("RouteType", String::new())]);
            }
            f
        }
        Kind::Ring => {
            let mut f = call.standard("ringing");
            f.push(("Event", "Ring".into()));
            if !call.outbound() {
                f.extend([
                    ("RequestUUID", call.request_uuid.clone()),
                    ("ALegRequestUUID", call.request_uuid.clone()),
                ]);
            }
            f
        }
        Kind::Hangup => hangup(call, step),
        Kind::MachineDetection => {
            let mut f = call.standard("in-progress");
            f.extend([
                ("Event", "MachineDetection".into()),
                ("Machine", "false".into()),
                ("IfMachine", "continue".into()),
            ]);
            f
        }
        Kind::Gather => {
            let mut f = call.standard("in-progress");
            let input = if step.speech.is_empty() {
                "dtmf"
            } else {
                "speech"
            };
            let score = if step.speech.is_empty() { "" } else { "0.92" };
            f.extend([
                ("InputType", input.into()),
                ("Digits", step.digits.clone()),
                ("Speech", step.speech.clone()),
                ("SpeechConfidenceScore", score.into()),
                ("BilledAmount", "0.00000".into()),
            ]);
            f
        }
        Kind::GatherInterim => {
            let mut f = call.standard("in-progress");
            f.extend([
                ("StableSpeech", "yes I".into()),
                ("UnstableSpeech", "would like".into()),
                ("Stability", "0.8".into()),
                ("SequenceNumber", "1".into()),
            ]);
            f
        }
        Kind::DialStatus => dial_status(call, step),
        Kind::DialAction => {
            let mut f = call.standard("in-progress");
            f.extend([
                ("Event", "DialAction".into()),
                ("DialStatus", "completed".into()),
                ("DialRingStatus", "true".into()),
                ("DialHangupCause", "NORMAL_CLEARING".into()),
                ("DialALegUUID", call.call_uuid.clone()),
                ("DialBLegUUID", or_fresh(&step.id)),
            ]);
            f
        }
        Kind::Record => {
            let mut f = call.standard("in-progress");
            let id = or_fresh(&step.id);
            f.extend([
                ("Event", "Record".into()),
                ("RecordUrl", recording_url(&id)),
                ("RecordingID", id),
            ]);
            f
        }
        Kind::RecordCallback => record_stop(call, step),
        Kind::Transcription => vec![
            (
                "transcription",
                "Hello, I would like to book a table.".into(),
            ),
            ("transcription_id", uuid_v4()),
            (
                "transcription_url",
                format!("https://media.vobiz.ai/v1/transcriptions/{}.txt", uuid_v4()),
            ),
            ("recording_id", or_fresh(&step.id)),
        ],
        Kind::RecordApi => record_api(call, step),
        Kind::Conference => conference(call, step),
        Kind::ConferenceSounds => {
            let mut f = call.standard("in-progress");
            f.extend([
                ("Event", "ConferenceRemoteSounds".into()),
                ("ConferenceAction", "waitSound".into()),
            ]);
            f
        }
        Kind::StreamStatus => {
            let mut f = call.standard("in-progress");
            f.extend([
                ("Event", "StartStream".into()),
                ("StreamID", uuid_v4()),
                ("ServiceURL", step.stream.service_url.clone()),
                ("Timestamp", call.time_at(step.at)),
                ("Error", String::new()),
                (
                    "status_callback_method",
                    step.stream.status_callback_method.clone(),
                ),
                (
                    "status_callback_url",
                    step.stream.status_callback_url.clone(),
                ),
            ]);
            f
        }
        Kind::Redirect => event(call, "Redirect"),
        Kind::Transfer => event(call, "Transfer"),
    };
    // Vobiz sends keys sorted by byte order (the wire sample); a stable sort keeps the
    // order of a repeated key.
    f.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    f.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn or_fresh(id: &str) -> String {
    if id.is_empty() {
        uuid_v4()
    } else {
        id.to_owned()
    }
}

fn recording_url(id: &str) -> String {
    format!("https://media.vobiz.ai/v1/recordings/{id}.mp3")
}

fn event(call: &CallFacts, name: &str) -> Fields {
    let mut f = call.standard("in-progress");
    f.push(("Event", name.to_owned()));
    f
}

fn hangup(call: &CallFacts, step: &Step) -> Fields {
    // Answered two seconds after the start (the ring); billed per started minute.
    let duration = step.at.max(2.0).round() as u64 - 2;
    let bill = duration.div_ceil(60) * 60;
    let mut f = call.standard("completed");
    let source = if step.hangup_source.is_empty() {
        "Caller"
    } else {
        step.hangup_source.as_str()
    };
    f.extend([
        ("Event", "Hangup".into()),
        ("Duration", duration.to_string()),
        ("BillDuration", bill.to_string()),
        ("BillRate", "0.00500".into()),
        ("TotalCost", format!("{:.5}", bill as f64 / 60.0 * 0.005)),
        ("HangupCause", "NORMAL_CLEARING".into()),
        ("HangupCauseCode", "4000".into()),
        ("HangupCauseName", "Normal Hangup".into()),
        ("HangupSource", source.to_owned()),
        ("StartTime", call.time_at(0.0)),
        ("AnswerTime", call.time_at(2.0)),
        ("EndTime", call.time_at(step.at.max(2.0))),
    ]);
    f
}

fn dial_status(call: &CallFacts, step: &Step) -> Fields {
    let answer = step.event == "DialAnswer";
    let mut f = call.standard("in-progress");
    let target = if step.target.is_empty() {
        "918067891234"
    } else {
        step.target.as_str()
    };
    f.extend([
        (
            "Event",
            if answer { "DialAnswer" } else { "DialHangup" }.into(),
        ),
        (
            "DialAction",
            if answer { "answer" } else { "hangup" }.into(),
        ),
        ("DialALegUUID", call.call_uuid.clone()),
        ("DialBLegUUID", or_fresh(&step.id)),
        (
            "DialBLegStatus",
            if answer { "answer" } else { "hangup" }.into(),
        ),
        ("DialBLegFrom", call.to.clone()),
        ("DialBLegTo", target.trim_start_matches('+').to_owned()),
        ("DialBLegPosition", "1".into()),
    ]);
    if !answer {
        let length = step.length.round() as u64;
        f.extend([
            ("DialBLegDuration", length.to_string()),
            (
                "DialBLegBillDuration",
                (length.div_ceil(60) * 60).to_string(),
            ),
            ("DialBLegHangupCause", "NORMAL_CLEARING".into()),
            ("DialBLegHangupCauseCode", "4000".into()),
            ("DialBLegHangupCauseName", "Normal Hangup".into()),
            ("DialBLegHangupSource", "Callee".into()),
        ]);
    }
    f
}

/// When a recording started (Unix ms) and how long it lasted (ms, at least 1 s). It ends at
/// the step: Vobiz reports a recording once it is over, so a single callback (its step is
/// now) never carries an end in the future, and in a call RecordStop follows the recording.
fn recording_span(call: &CallFacts, step: &Step) -> (u64, u64) {
    let ms = (step.length.max(1.0) * 1000.0).round() as u64;
    let end_ms = (call.start.unix_timestamp_nanos() / 1_000_000) as u64 + (step.at * 1000.0) as u64;
    (end_ms.saturating_sub(ms), ms)
}

fn record_stop(call: &CallFacts, step: &Step) -> Fields {
    let id = or_fresh(&step.id);
    let (start_ms, ms) = recording_span(call, step);
    let mut f = call.standard("in-progress");
    f.extend([
        ("Event", "RecordStop".into()),
        ("RecordUrl", recording_url(&id)),
        ("RecordingID", id),
        ("RecordingDuration", (ms / 1000).to_string()),
        ("RecordingDurationMs", ms.to_string()),
        ("RecordingStartMs", start_ms.to_string()),
        ("RecordingEndMs", (start_ms + ms).to_string()),
        ("RecordingEndReason", "RecordingTimeout".into()),
    ]);
    f
}

/// The Record API's callback: snake_case fields, no `Event`, the call in `call_uuid`.
fn record_api(call: &CallFacts, step: &Step) -> Fields {
    let id = or_fresh(&step.id);
    let (start_ms, ms) = recording_span(call, step);
    vec![
        ("api_id", uuid_v4()),
        ("call_uuid", call.call_uuid.clone()),
        ("record_url", recording_url(&id)),
        ("recording_duration", (ms / 1000).to_string()),
        ("recording_duration_ms", ms.to_string()),
        ("recording_end_ms", (start_ms + ms).to_string()),
        ("recording_id", id),
        ("recording_start_ms", start_ms.to_string()),
    ]
}

fn conference(call: &CallFacts, step: &Step) -> Fields {
    let exit = step.event == "ConferenceExit";
    let room = if step.target.is_empty() {
        "support-room"
    } else {
        step.target.as_str()
    };
    let mut f = call.standard("in-progress");
    f.extend([
        (
            "Event",
            if exit {
                "ConferenceExit"
            } else {
                "ConferenceEnter"
            }
            .into(),
        ),
        (
            "ConferenceAction",
            if exit { "exit" } else { "enter" }.into(),
        ),
        ("ConferenceUUID", or_fresh(&step.conference_uuid)),
        ("ConferenceName", room.to_owned()),
        (
            "ConferenceMemberID",
            if step.id.is_empty() {
                "1".into()
            } else {
                step.id.clone()
            },
        ),
        ("ConferenceFirstMember", "true".into()),
        ("ConferenceLastMember", exit.to_string()),
    ]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::catalogue::Kind;

    #[test]
    fn every_kind_is_sorted_and_consistent() {
        let call = CallFacts::new("919876543210", "918045678901", "inbound");
        for kind in Kind::ALL {
            let f = fields(kind, &call, &Step::default());
            let keys: Vec<&[u8]> = f.iter().map(|(k, _)| k.as_bytes()).collect();
            assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{kind:?}");
            let uuid_key = match kind {
                Kind::Transcription => continue,
                Kind::RecordApi => "call_uuid",
                _ => "CallUUID",
            };
            assert!(
                f.contains(&(uuid_key.into(), call.call_uuid.clone())),
                "{kind:?}"
            );
        }
    }
}
