//! The Vobiz XML vocabulary (spec §5): elements, what each may contain, its attributes, the
//! attributes that carry URLs, and the Plivo-era names Vobiz renamed or dropped.

/// One Vobiz XML element.
pub struct Element {
    pub name: &'static str,
    /// Elements allowed directly inside it.
    pub children: &'static [&'static str],
    /// Attributes Vobiz documents for it.
    pub attributes: &'static [&'static str],
}

/// Every element Vobiz XML knows, `Response` first.
pub const ELEMENTS: &[Element] = &[
    Element {
        name: "Response",
        children: &[
            "Speak",
            "Play",
            "Wait",
            "Gather",
            "Dial",
            "Record",
            "Conference",
            "Redirect",
            "Hangup",
            "PreAnswer",
            "DTMF",
            "Stream",
        ],
        attributes: &[],
    },
    Element {
        name: "Speak",
        children: &[],
        attributes: &["voice", "language", "loop"],
    },
    Element {
        name: "Play",
        children: &[],
        attributes: &["loop"],
    },
    Element {
        name: "Wait",
        children: &[],
        attributes: &["length", "silence", "beep", "minSilence"],
    },
    Element {
        name: "Gather",
        children: &["Speak", "Play"],
        attributes: &[
            "action",
            "method",
            "inputType",
            "executionTimeout",
            "digitEndTimeout",
            "speechEndTimeout",
            "finishOnKey",
            "numDigits",
            "language",
            "speechModel",
            "hints",
            "profanityFilter",
            "redirect",
            "log",
            "interimSpeechResultsCallback",
            "interimSpeechResultsCallbackMethod",
        ],
    },
    Element {
        name: "Dial",
        children: &["Number", "User", "Record"],
        attributes: &[
            "action",
            "method",
            "callbackUrl",
            "callbackMethod",
            "dialMusic",
            "confirmSound",
            "confirmKey",
            "redirect",
            "sipHeaders",
            "timeout",
            "timeLimit",
            "callerId",
            "callerName",
            "hangupOnStar",
            "digitsMatch",
            "digitsMatchBLeg",
        ],
    },
    Element {
        name: "Number",
        children: &[],
        attributes: &["sendDigits", "sendOnPreanswer"],
    },
    Element {
        name: "User",
        children: &[],
        attributes: &["sendDigits", "sendOnPreanswer", "sipHeaders"],
    },
    Element {
        name: "Record",
        children: &[],
        attributes: &[
            "action",
            "method",
            "callbackUrl",
            "callbackMethod",
            "transcriptionUrl",
            "transcriptionMethod",
            "transcriptionType",
            "redirect",
            "fileFormat",
            "timeout",
            "maxLength",
            "finishOnKey",
            "playBeep",
            "recordSession",
            "startOnDialAnswer",
        ],
    },
    Element {
        name: "Conference",
        children: &[],
        attributes: &[
            "callbackUrl",
            "callbackMethod",
            "waitSound",
            "action",
            "method",
            "enterSound",
            "exitSound",
            "muted",
            "startConferenceOnEnter",
            "endConferenceOnExit",
            "maxMembers",
            "timeLimit",
            "hangupOnStar",
            "record",
            "recordFileFormat",
            "stayAlone",
            "digitsMatch",
            "floorEvent",
            "redirect",
        ],
    },
    Element {
        name: "Redirect",
        children: &[],
        attributes: &["method"],
    },
    Element {
        name: "Hangup",
        children: &[],
        attributes: &["reason", "schedule"],
    },
    Element {
        name: "PreAnswer",
        children: &["Speak", "Play", "Wait"],
        attributes: &[],
    },
    Element {
        name: "DTMF",
        children: &[],
        attributes: &["async"],
    },
    Element {
        name: "Stream",
        children: &[],
        attributes: &[
            "statusCallbackUrl",
            "statusCallbackMethod",
            "bidirectional",
            "audioTrack",
            "contentType",
            "keepCallAlive",
            "streamTimeout",
            "extraHeaders",
            "maxRetries",
        ],
    },
];

/// The element named `name`.
pub fn element(name: &str) -> Option<&'static Element> {
    ELEMENTS.iter().find(|e| e.name == name)
}

/// Plivo-era element names and what to write instead.
pub const PLIVO_ELEMENTS: &[(&str, &str)] = &[
    (
        "GetDigits",
        "Plivo-era name: Vobiz uses <Gather inputType=\"dtmf\">",
    ),
    ("GetInput", "Plivo-era name: Vobiz uses <Gather>"),
    (
        "MultiPartyCall",
        "Plivo-era verb Vobiz does not support: use <Conference>",
    ),
    ("Message", "Plivo-era SMS verb: Vobiz XML has no <Message>"),
];

/// Plivo-era attributes of an element and their Vobiz names: (element, attribute, advice).
pub const PLIVO_ATTRIBUTES: &[(&str, &str, &str)] = &[
    (
        "Gather",
        "timeout",
        "Vobiz ignores it; use executionTimeout",
    ),
    ("Gather", "type", "use inputType"),
];

/// Attributes whose value is a URL Vobiz will call or fetch (`dialMusic` may also be `real`).
pub const URL_ATTRIBUTES: &[&str] = &[
    "action",
    "callbackUrl",
    "interimSpeechResultsCallback",
    "dialMusic",
    "confirmSound",
    "transcriptionUrl",
    "waitSound",
    "statusCallbackUrl",
];

/// Elements whose text is a URL Vobiz calls or fetches.
pub const URL_TEXT_ELEMENTS: &[&str] = &["Redirect", "Play"];

/// Elements that hold elements or nothing, never text (spec §5): text inside them is not
/// spoken or played, only ignored.
pub const NO_TEXT_ELEMENTS: &[&str] = &[
    "Response",
    "Wait",
    "Gather",
    "Record",
    "Hangup",
    "PreAnswer",
];

/// Attributes Vobiz requires, by element (spec §5: `<Gather action>`).
pub const REQUIRED_ATTRIBUTES: &[(&str, &str, &str)] = &[(
    "Gather",
    "action",
    "the digits or speech the caller gives are sent there, and without it they go nowhere",
)];
