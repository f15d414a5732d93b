//! The callback catalogue (spec §4): which fields Vobiz sends for each kind of callback, with
//! consistent, plausible values. Fields are returned sorted by key in byte order, which is
//! how Vobiz sends them (see the wire sample), so a body built from them looks real.
//! This file holds the kinds and the call's shared facts; [`fields`] builds the bodies.

use rand::Rng;
use time::{Duration, OffsetDateTime, UtcOffset};

/// One kind of callback a trigger can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// answer_url, `Event=StartApp`.
    Answer,
    /// ring_url, `Event=Ring`.
    Ring,
    /// hangup_url, `Event=Hangup`.
    Hangup,
    /// machine_detection_url, `Event=MachineDetection`.
    MachineDetection,
    /// `<Gather action>`.
    Gather,
    /// `<Gather interimSpeechResultsCallback>`.
    GatherInterim,
    /// `<Dial callbackUrl>` (`DialHangup`; the call simulation also sends `DialAnswer`).
    DialStatus,
    /// `<Dial action>`, `Event=DialAction`.
    DialAction,
    /// `<Record action>`, `Event=Record`.
    Record,
    /// `<Record callbackUrl>`, `Event=RecordStop`.
    RecordCallback,
    /// `<Record transcriptionUrl>`.
    Transcription,
    /// Record API `callback_url` (snake_case fields).
    RecordApi,
    /// `<Conference callbackUrl>`, `Event=ConferenceEnter`.
    Conference,
    /// `<Conference waitSound>` / `dialMusic` / `confirmSound`, `Event=ConferenceRemoteSounds`.
    ConferenceSounds,
    /// `<Stream statusCallbackUrl>`, `Event=StartStream`.
    StreamStatus,
    /// a `<Redirect>` target, `Event=Redirect`.
    Redirect,
    /// Transfer API `aleg_url`, `Event=Transfer`.
    Transfer,
}

impl Kind {
    /// Every kind, in catalogue order.
    pub const ALL: [Kind; 17] = [
        Kind::Answer,
        Kind::Ring,
        Kind::Hangup,
        Kind::MachineDetection,
        Kind::Gather,
        Kind::GatherInterim,
        Kind::DialStatus,
        Kind::DialAction,
        Kind::Record,
        Kind::RecordCallback,
        Kind::Transcription,
        Kind::RecordApi,
        Kind::Conference,
        Kind::ConferenceSounds,
        Kind::StreamStatus,
        Kind::Redirect,
        Kind::Transfer,
    ];

    /// The subcommand name, e.g. `dial-action`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Answer => "answer",
            Kind::Ring => "ring",
            Kind::Hangup => "hangup",
            Kind::MachineDetection => "machine-detection",
            Kind::Gather => "gather",
            Kind::GatherInterim => "gather-interim",
            Kind::DialStatus => "dial-status",
            Kind::DialAction => "dial-action",
            Kind::Record => "record",
            Kind::RecordCallback => "record-callback",
            Kind::Transcription => "transcription",
            Kind::RecordApi => "record-api",
            Kind::Conference => "conference",
            Kind::ConferenceSounds => "conference-sounds",
            Kind::StreamStatus => "stream-status",
            Kind::Redirect => "redirect",
            Kind::Transfer => "transfer",
        }
    }

    /// Whether Vobiz reads the answer as Vobiz XML (so a malformed answer breaks the call).
    pub fn expects_xml(self) -> bool {
        matches!(
            self,
            Kind::Answer
                | Kind::Gather
                | Kind::DialAction
                | Kind::Record
                | Kind::ConferenceSounds
                | Kind::Redirect
                | Kind::Transfer
        )
    }
}

/// The facts of one (simulated) call that every callback about it must agree on.
#[derive(Clone, Debug)]
pub struct CallFacts {
    /// `CallUUID`, a UUID v4.
    pub call_uuid: String,
    /// `RequestUUID` of an outbound call (also used as `ALegRequestUUID`).
    pub request_uuid: String,
    /// Caller, E.164 without `+` (as Vobiz sends it).
    pub from: String,
    /// Called number.
    pub to: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// When the call started, with its sub-second part (`StartTime` and the other local times
    /// are in India's time; `SessionStart` is the same instant in UTC, to the microsecond).
    pub start: OffsetDateTime,
}

/// India Standard Time: Vobiz's `StartTime`/`AnswerTime`/`EndTime` are local times there.
const IST: UtcOffset = match UtcOffset::from_hms(5, 30, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// A fresh UUID in version-4 format (random, with the version and variant bits set).
pub fn uuid_v4() -> String {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl CallFacts {
    /// A new inbound call between two Indian numbers, starting now.
    pub fn new(from: &str, to: &str, direction: &str) -> CallFacts {
        CallFacts {
            call_uuid: uuid_v4(),
            request_uuid: uuid_v4(),
            from: from.to_owned(),
            to: to.to_owned(),
            direction: direction.to_owned(),
            start: OffsetDateTime::now_utc().to_offset(IST),
        }
    }

    /// The same call, started `seconds` ago: a single callback about a call that is already
    /// under way (a hangup after a minute's talk) then carries times up to now, not after it.
    pub fn started_ago(mut self, seconds: f64) -> CallFacts {
        self.start -= Duration::seconds_f64(seconds);
        self
    }

    /// `2026-06-08 11:41:20` (India's time) at `seconds` after the start.
    pub fn time_at(&self, seconds: f64) -> String {
        date_time(self.start + Duration::seconds_f64(seconds))
    }

    /// `SessionStart`: the start in UTC with microseconds, `2026-06-08 06:11:20.433938`
    /// (the wire sample and the SDK vectors: five and a half hours behind `StartTime`).
    pub fn session_start(&self) -> String {
        let utc = self.start.to_offset(UtcOffset::UTC);
        format!("{}.{:06}", date_time(utc), utc.microsecond())
    }

    pub(super) fn outbound(&self) -> bool {
        self.direction == "outbound"
    }

    /// The fields every voice callback carries ("Std" in the catalogue).
    pub(super) fn standard(&self, status: &str) -> Fields {
        let mut f = vec![
            ("CallUUID", self.call_uuid.clone()),
            ("From", self.from.clone()),
            ("To", self.to.clone()),
            ("Direction", self.direction.clone()),
            ("CallStatus", status.to_owned()),
            ("CallerName", format!("+{}", self.from)),
            ("ParentAuthID", "MA_DEVTUNNEL".to_owned()),
            ("SessionStart", self.session_start()),
        ];
        if self.outbound() {
            f.push(("RequestUUID", self.request_uuid.clone()));
            f.push(("ALegUUID", self.call_uuid.clone()));
            f.push(("ALegRequestUUID", self.request_uuid.clone()));
        } else {
            f.push(("STIRAttestation", "Not Applicable".to_owned()));
            f.push(("STIRVerification", "Not Applicable".to_owned()));
        }
        f
    }
}

/// `YYYY-MM-DD HH:MM:SS` in the offset `at` carries.
fn date_time(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Field names are static; values vary.
pub(super) type Fields = Vec<(&'static str, String)>;

/// Values that vary per step of a call: what was pressed, recorded, dialled, and when.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// Seconds since the call started.
    pub at: f64,
    /// Gather: digits pressed (empty on timeout).
    pub digits: String,
    /// Gather: speech recognised (empty unless speech input).
    pub speech: String,
    /// Dial: the number dialled; Conference: the room name.
    pub target: String,
    /// Dial/Conference/Record: how long the leg, membership or recording lasted (s).
    pub length: f64,
    /// Hangup: who ended the call (`Caller`, `Answer XML`, `Vobiz`).
    pub hangup_source: String,
    /// Dial: `DialAnswer`/`DialHangup`; Conference: `ConferenceEnter`/`ConferenceExit`.
    pub event: String,
    /// Dial's B leg / recording / conference member id, stable within a call.
    pub id: String,
    /// Conference: its `ConferenceUUID`, the same in every callback about that conference
    /// (a fresh one when empty).
    pub conference_uuid: String,
    /// Stream: what its status callbacks echo of the `<Stream>` element.
    pub stream: StreamEcho,
}

/// What Vobiz echoes of a `<Stream>` element in its status callbacks, so that an app can tell
/// which of its streams a callback is about.
#[derive(Clone, Debug, Default)]
pub struct StreamEcho {
    /// `ServiceURL`: the element's text, the WebSocket URL Vobiz streams the audio to.
    pub service_url: String,
    /// `status_callback_url`: the `statusCallbackUrl` as configured (the URL signed).
    pub status_callback_url: String,
    /// `status_callback_method`: the `statusCallbackMethod`.
    pub status_callback_method: String,
}

pub use super::fields::fields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_start_is_the_start_in_utc_to_the_microsecond() {
        let call = CallFacts::new("919876543210", "918045678901", "inbound");
        let local = call.time_at(0.0);
        let session = call.session_start();
        let utc = call.start - Duration::minutes(330);
        assert_eq!(
            &session[..19],
            date_time(utc.replace_offset(UtcOffset::UTC))
        );
        assert_eq!(session.len(), 26, "{session}");
        assert_ne!(
            &session[..19],
            local,
            "StartTime is India's time, SessionStart UTC"
        );
        let other = CallFacts::new("919876543210", "918045678901", "inbound");
        assert_ne!(
            (&session[20..], call.call_uuid),
            (&other.session_start()[20..], other.call_uuid)
        );
    }

    #[test]
    fn a_call_started_ago_ends_by_now() {
        let before = OffsetDateTime::now_utc();
        let call = CallFacts::new("919876543210", "918045678901", "inbound").started_ago(62.0);
        let ended = call.start + Duration::seconds(62);
        assert!(ended >= before && ended <= OffsetDateTime::now_utc());
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
