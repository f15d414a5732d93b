//! Which kind of Vobiz callback an exchange is, from its `Event` and fields (the spec's §4
//! catalogue): one that expects Vobiz XML in reply (answer and action URLs), a status
//! callback that only needs a 200, or something else (not recognisably Vobiz).

use crate::exchange::Exchange;

/// What Vobiz expects in reply to a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackKind {
    /// Vobiz XML: answer_url (`StartApp`), `<Redirect>`/Transfer, Gather/Dial/Record action,
    /// Conference wait sound. The text names the callback for messages.
    ExpectsXml(&'static str),
    /// A status callback: a 200 is all Vobiz wants, and anything else is retried.
    Status(&'static str),
    /// Not recognisably a Vobiz voice callback; no reply rule applies.
    Other,
}

impl CallbackKind {
    pub fn expects_xml(self) -> bool {
        matches!(self, CallbackKind::ExpectsXml(_))
    }
}

/// `Event` values of callbacks whose reply is Vobiz XML.
const XML_EVENTS: &[(&str, &str)] = &[
    ("StartApp", "answer callback (StartApp)"),
    ("Redirect", "Redirect callback"),
    ("Transfer", "Transfer callback"),
    ("DialAction", "Dial action callback"),
    ("Record", "Record action callback"),
    ("ConferenceRemoteSounds", "Conference waitSound callback"),
];

/// `Event` values of status callbacks (ring, hangup, machine detection, Dial/Conference/
/// Record/Stream status).
const STATUS_EVENTS: &[&str] = &[
    "Ring",
    "Hangup",
    "MachineDetection",
    "RecordStop",
    "DialAnswer",
    "DialConnected",
    "DialDigitsMatch",
    "DialHangup",
    "ConferenceEnter",
    "ConferenceExit",
    "ConferenceDigitsMatch",
    "StartStream",
    "PlayedStream",
    "ClearedAudio",
    "DegradedStream",
    "DroppedStream",
    "StopStream",
];

/// Whether the same callback may come again in one call without being a retry: a menu's
/// Gather action (the caller presses the same key when the prompt is played again) or a
/// Redirect back to the same URL.
pub fn repeats_in_a_loop(exchange: &Exchange) -> bool {
    match exchange.event.as_deref() {
        Some(event) => event == "Redirect",
        None => {
            let request = &exchange.request;
            request.form_field("InputType").is_some() || request.form_field("Digits").is_some()
        }
    }
}

/// Classifies by `Event` first (no body scan for the common case), then by the fields that
/// identify callbacks Vobiz sends without an `Event`.
pub fn callback_kind(exchange: &Exchange) -> CallbackKind {
    if let Some(event) = exchange.event.as_deref() {
        if let Some((_, name)) = XML_EVENTS.iter().find(|(e, _)| *e == event) {
            return CallbackKind::ExpectsXml(name);
        }
        if let Some(name) = STATUS_EVENTS.iter().find(|e| **e == event) {
            return CallbackKind::Status(name);
        }
    }
    let request = &exchange.request;
    let has = |name: &str| request.form_field(name).is_some();
    if exchange.event.is_none() {
        // Gather action: sent with InputType/Digits (empty on timeout), no Event.
        if has("InputType") || has("Digits") {
            return CallbackKind::ExpectsXml("Gather action callback");
        }
        if has("DialStatus") {
            return CallbackKind::ExpectsXml("Dial action callback");
        }
        if request.form_field("ConferenceAction").as_deref() == Some("waitSound") {
            return CallbackKind::ExpectsXml("Conference waitSound callback");
        }
        if has("RecordingID") {
            return CallbackKind::ExpectsXml("Record action callback");
        }
        if has("StableSpeech") || has("UnstableSpeech") {
            return CallbackKind::Status("Gather interim speech callback");
        }
        if has("transcription_id") {
            return CallbackKind::Status("Record transcription callback");
        }
        if has("recording_id") {
            return CallbackKind::Status("Record API callback");
        }
    }
    if exchange.call_uuid.is_some() {
        // A call's callback with an event we do not know: Vobiz still wants its 200.
        return CallbackKind::Status("callback");
    }
    CallbackKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::delivery_tests::callback;

    #[test]
    fn events_and_fields_decide_the_kind() {
        let kind = |body: &str| callback_kind(&callback("/cb", body));
        assert!(kind("CallUUID=a&Event=StartApp").expects_xml());
        assert!(kind("CallUUID=a&Event=Redirect").expects_xml());
        assert!(kind("CallUUID=a&Digits=12&InputType=dtmf").expects_xml());
        assert!(kind("CallUUID=a&DialStatus=completed").expects_xml());
        assert!(kind("CallUUID=a&RecordingID=r1").expects_xml());
        assert_eq!(
            kind("CallUUID=a&Event=Hangup"),
            CallbackKind::Status("Hangup")
        );
        assert_eq!(
            kind("CallUUID=a&Event=RecordStop&RecordingID=r1"),
            CallbackKind::Status("RecordStop")
        );
        assert_eq!(
            kind("CallUUID=a&Event=DialHangup&DialAction=hangup"),
            CallbackKind::Status("DialHangup")
        );
        assert_eq!(kind("hello=world"), CallbackKind::Other);
    }
}
