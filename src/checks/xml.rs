//! The XML lint of a local server's answer to a callback that expects Vobiz XML (spec §5):
//! status, Content-Type, size, well-formedness, the `<Response>` root, known elements and
//! attributes, and URLs Vobiz can call. The body is parsed once (with `quick-xml`) into a
//! flat list of elements that the structural rules share.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::urls::url_problem;
use super::vocabulary::{
    self, NO_TEXT_ELEMENTS, PLIVO_ATTRIBUTES, PLIVO_ELEMENTS, REQUIRED_ATTRIBUTES, URL_ATTRIBUTES,
};
use super::{Finding, Severity};
use crate::exchange::{Exchange, Outcome};

pub const XML_STATUS: &str = "xml-status";
pub const XML_CONTENT_TYPE: &str = "xml-content-type";
pub const XML_SIZE: &str = "xml-size";
pub const XML_WELL_FORMED: &str = "xml-well-formed";
pub const XML_ROOT: &str = "xml-root";
pub const XML_KNOWN_ELEMENTS: &str = "xml-known-elements";
pub const XML_KNOWN_ATTRIBUTES: &str = "xml-known-attributes";
pub const XML_REQUIRED_ATTRIBUTES: &str = "xml-required-attributes";
pub const XML_ACTION_URLS: &str = "xml-action-urls";

/// Vobiz rejects answer XML larger than this (100 KB).
pub const MAX_XML_BYTES: usize = 100 * 1024;

/// Bodies larger than this are not parsed at all: `xml-size` already fails them, and the
/// lint must stay cheap whatever the local server sends.
const PARSE_LIMIT: usize = 1024 * 1024;

/// One element of the answer, in document order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Index of the enclosing element; `None` for a root.
    pub parent: Option<usize>,
    pub attributes: Vec<(String, String)>,
    /// Its text content, unescaped (only what sits directly inside it).
    pub text: String,
}

/// The parsed answer: the elements read, and the first well-formedness error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub nodes: Vec<Node>,
    pub error: Option<String>,
}

impl Parsed {
    /// The elements, when the document is well-formed (structural rules say nothing about a
    /// broken document: `xml-well-formed` already does).
    fn nodes(&self) -> Option<&[Node]> {
        self.error.is_none().then_some(self.nodes.as_slice())
    }
}

/// What the XML rules look at: a 2xx answer's `Content-Type`, its body and the body's parse
/// (`None` when too large to parse).
pub struct Reply<'a> {
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub parsed: Option<Parsed>,
}

impl<'a> Reply<'a> {
    pub fn new(content_type: Option<&'a str>, body: &'a [u8]) -> Reply<'a> {
        Reply {
            content_type,
            body,
            parsed: (body.len() <= PARSE_LIMIT).then(|| parse(body)),
        }
    }
}

/// An XML rule.
pub type XmlRule = fn(&Reply<'_>) -> Option<Finding>;

/// Rules over a 2xx answer, in display order.
pub const BODY_RULES: &[XmlRule] = &[
    content_type,
    size,
    well_formed,
    root,
    known_elements,
    known_attributes,
    required_attributes,
    action_urls,
];

/// Lints the local server's answer. Nothing when the tool answered itself (the error says
/// why); only `xml-status` when the answer is not a success (its body is not XML anyway).
pub fn lint(exchange: &Exchange) -> Vec<Finding> {
    let Some(response) = exchange.response.as_ref() else {
        return Vec::new();
    };
    if exchange.outcome != Outcome::Forwarded {
        return Vec::new();
    }
    let headers = &response.headers;
    let content_type = headers.get_str("content-type");
    let content_encoding = headers.get_str("content-encoding");
    lint_answer(
        response.status,
        content_type,
        content_encoding,
        &response.body,
    )
}

/// Lints an answer to a callback that expects XML, wherever it came from: the listener's
/// record of one ([`lint`]) or `trigger`'s, which so never disagrees with the inspector. A
/// gzipped body is read as Vobiz reads it, unzipped.
pub fn lint_answer(
    status: u16,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
) -> Vec<Finding> {
    let mut found: Vec<Finding> = status_finding(status).into_iter().collect();
    if !(200..300).contains(&status) {
        return found;
    }
    let body = match super::encoding::decoded(content_encoding, body, PARSE_LIMIT) {
        Ok(body) => body,
        Err(problem) => {
            found.push(Finding::new(XML_CONTENT_TYPE, Severity::Error, problem));
            return found;
        }
    };
    let reply = Reply::new(content_type, &body);
    found.extend(BODY_RULES.iter().filter_map(|rule| rule(&reply)));
    found
}

/// Reads `body` into elements; stops at the first error.
pub fn parse(body: &[u8]) -> Parsed {
    let mut reader = Reader::from_reader(body);
    let mut parsed = Parsed::default();
    let mut open: Vec<usize> = Vec::new();
    loop {
        let at = reader.buffer_position();
        let step: Result<bool, String> = match reader.read_event() {
            Ok(Event::Start(e)) => push_element(&mut parsed, &open, &e).map(|index| {
                open.push(index);
                true
            }),
            Ok(Event::Empty(e)) => push_element(&mut parsed, &open, &e).map(|_| true),
            Ok(Event::End(_)) => {
                open.pop();
                Ok(true)
            }
            Ok(Event::Text(t)) => match (open.last(), t.decode()) {
                (_, Err(err)) => Err(format!("text is not valid: {err}")),
                (None, Ok(text)) if !text.trim().is_empty() => {
                    Err("text outside the root element".into())
                }
                (None, Ok(_)) => Ok(true),
                (Some(&index), Ok(text)) => {
                    parsed.nodes[index].text.push_str(&text);
                    Ok(true)
                }
            },
            Ok(Event::CData(t)) => {
                if let Some(&index) = open.last() {
                    parsed.nodes[index]
                        .text
                        .push_str(&String::from_utf8_lossy(&t));
                }
                Ok(true)
            }
            Ok(Event::GeneralRef(r)) => match resolve_reference(&r) {
                Some(c) => {
                    if let Some(&index) = open.last() {
                        parsed.nodes[index].text.push(c);
                    }
                    Ok(true)
                }
                None => Err(format!(
                    "undefined entity &{};",
                    String::from_utf8_lossy(&r)
                )),
            },
            Ok(Event::Eof) => Ok(false),
            Ok(_) => Ok(true), // declaration, comments, processing instructions, doctype
            Err(err) => Err(err.to_string()),
        };
        match step {
            Ok(true) => {}
            Ok(false) => break,
            Err(message) => {
                parsed.error = Some(format!("{message} (at byte {at})"));
                return parsed;
            }
        }
    }
    if let Some(&index) = open.last() {
        parsed.error = Some(format!("<{}> is never closed", parsed.nodes[index].name));
    } else if parsed.nodes.is_empty() {
        parsed.error = Some("no element at all (answer at least <Response></Response>)".into());
    }
    parsed
}

/// Appends the element `e` (inside the innermost open one) and returns its index.
fn push_element(
    parsed: &mut Parsed,
    open: &[usize],
    e: &quick_xml::events::BytesStart<'_>,
) -> Result<usize, String> {
    let mut attributes = Vec::new();
    for attribute in e.attributes() {
        let a = attribute.map_err(|err| format!("bad attribute: {err}"))?;
        let name = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|err| format!("attribute {name}: {err}"))?
            .into_owned();
        attributes.push((name, value));
    }
    parsed.nodes.push(Node {
        name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
        parent: open.last().copied(),
        attributes,
        text: String::new(),
    });
    Ok(parsed.nodes.len() - 1)
}

/// The character of a predefined entity or character reference.
fn resolve_reference(reference: &quick_xml::events::BytesRef<'_>) -> Option<char> {
    if reference.is_char_ref() {
        return reference.resolve_char_ref().ok().flatten();
    }
    match &**reference {
        b"amp" => Some('&'),
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"quot" => Some('"'),
        b"apos" => Some('\''),
        _ => None,
    }
}

/// `xml-status`: Vobiz acts on the XML only with a 200.
pub fn status_finding(status: u16) -> Option<Finding> {
    (status != 200).then(|| {
        Finding::new(
            XML_STATUS,
            Severity::Error,
            format!(
                "answered {status}: Vobiz needs 200 with XML here (otherwise it uses the \
                 fallback URL or drops the call)"
            ),
        )
    })
}

/// `xml-content-type`: `application/xml` or `text/xml`; HTML or plain text is a parse error.
pub fn content_type(reply: &Reply<'_>) -> Option<Finding> {
    content_type_problem(reply.content_type)
        .map(|message| Finding::new(XML_CONTENT_TYPE, Severity::Error, message))
}

/// Why Vobiz would not read an answer with this `Content-Type` header as XML; `None` when it
/// would. Shared with `trigger`, which must fail a callback exactly when this rule does.
pub fn content_type_problem(header: Option<&str>) -> Option<String> {
    let media = header
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/xml" | "text/xml") => None,
        Some(other) => Some(format!(
            "Content-Type {other}: Vobiz parses only application/xml or text/xml \
             (anything else fails and the call drops)"
        )),
        None => Some("no Content-Type: send application/xml or text/xml".into()),
    }
}

/// `xml-size`: at most 100 KB.
pub fn size(reply: &Reply<'_>) -> Option<Finding> {
    size_problem(reply.body.len()).map(|message| Finding::new(XML_SIZE, Severity::Error, message))
}

/// Why Vobiz would refuse an answer of `len` bytes; `None` when the size is fine.
pub fn size_problem(len: usize) -> Option<String> {
    (len > MAX_XML_BYTES).then(|| {
        format!("{len} bytes of XML: over Vobiz's limit of {MAX_XML_BYTES} bytes (100 KB)")
    })
}

/// `xml-well-formed`: the body parses as XML (escape `&`, `<` and `>` in text).
pub fn well_formed(reply: &Reply<'_>) -> Option<Finding> {
    let error = reply.parsed.as_ref()?.error.as_ref()?;
    Some(Finding::new(
        XML_WELL_FORMED,
        Severity::Error,
        format!("not well-formed XML: {error}"),
    ))
}

/// `xml-root`: exactly one root element, `<Response>`, without attributes.
pub fn root(reply: &Reply<'_>) -> Option<Finding> {
    let nodes = reply.parsed.as_ref()?.nodes()?;
    let roots: Vec<&Node> = nodes.iter().filter(|n| n.parent.is_none()).collect();
    let (severity, message) = match roots.as_slice() {
        [one] if one.name != "Response" => (
            Severity::Error,
            format!(
                "the root element is <{}>: Vobiz expects <Response>",
                one.name
            ),
        ),
        [one] if !one.attributes.is_empty() => (
            Severity::Warning,
            "<Response> takes no attributes".to_string(),
        ),
        [_] => return None,
        many => (
            Severity::Error,
            format!(
                "{} root elements: wrap everything in one <Response>",
                many.len()
            ),
        ),
    };
    Some(Finding::new(XML_ROOT, severity, message))
}

/// Adds `problem` once.
fn note(problems: &mut Vec<String>, problem: String) {
    if !problems.contains(&problem) {
        problems.push(problem);
    }
}

/// `xml-known-elements`: every element is Vobiz XML, where Vobiz allows it; Plivo-era verbs
/// (`GetDigits`, `GetInput`, `MultiPartyCall`, `Message`) are named with their replacement;
/// no text stands where Vobiz takes none (`<Response>hello</Response>` says nothing).
pub fn known_elements(reply: &Reply<'_>) -> Option<Finding> {
    let nodes = reply.parsed.as_ref()?.nodes()?;
    let mut problems = Vec::new();
    for node in nodes {
        let text = node.text.trim();
        if !text.is_empty() && NO_TEXT_ELEMENTS.contains(&node.name.as_str()) {
            note(
                &mut problems,
                format!(
                    "text {:?} directly inside <{}>, which takes none: Vobiz ignores it \
                     (to say it, put it in <Speak>)",
                    shortened(text),
                    node.name
                ),
            );
        }
        let Some(parent) = node.parent.and_then(|p| nodes.get(p)) else {
            continue; // the root is xml-root's business
        };
        if let Some((_, advice)) = PLIVO_ELEMENTS.iter().find(|(n, _)| *n == node.name) {
            note(&mut problems, format!("<{}>: {advice}", node.name));
        } else if vocabulary::element(&node.name).is_none() {
            note(&mut problems, format!("unknown element <{}>", node.name));
        } else if let Some(known) = vocabulary::element(&parent.name) {
            if !known.children.contains(&node.name.as_str()) {
                note(
                    &mut problems,
                    format!("<{}> is not allowed inside <{}>", node.name, parent.name),
                );
            }
        }
    }
    (!problems.is_empty())
        .then(|| Finding::new(XML_KNOWN_ELEMENTS, Severity::Warning, problems.join("; ")))
}

/// `xml-known-attributes`: attributes Vobiz documents for each element; Plivo-era ones
/// (`timeout`, `type` on `<Gather>`) are named with their replacement.
pub fn known_attributes(reply: &Reply<'_>) -> Option<Finding> {
    let nodes = reply.parsed.as_ref()?.nodes()?;
    let mut problems = Vec::new();
    for node in nodes.iter().filter(|n| n.parent.is_some()) {
        let Some(element) = vocabulary::element(&node.name) else {
            continue; // unknown elements are reported by xml-known-elements
        };
        for (name, _) in &node.attributes {
            let plivo = PLIVO_ATTRIBUTES
                .iter()
                .find(|(e, a, _)| *e == node.name && a == name);
            if let Some((_, _, advice)) = plivo {
                note(&mut problems, format!("<{} {name}>: {advice}", node.name));
            } else if !element.attributes.contains(&name.as_str()) {
                note(
                    &mut problems,
                    format!("unknown attribute {name} on <{}>", node.name),
                );
            }
        }
    }
    (!problems.is_empty())
        .then(|| Finding::new(XML_KNOWN_ATTRIBUTES, Severity::Warning, problems.join("; ")))
}

/// `xml-required-attributes`: what Vobiz documents as required is there (`<Gather action>`).
pub fn required_attributes(reply: &Reply<'_>) -> Option<Finding> {
    let nodes = reply.parsed.as_ref()?.nodes()?;
    let mut problems = Vec::new();
    for node in nodes.iter().filter(|n| n.parent.is_some()) {
        for (element, attribute, why) in REQUIRED_ATTRIBUTES {
            let present = node.attributes.iter().any(|(name, _)| name == attribute);
            if node.name == *element && !present {
                note(
                    &mut problems,
                    format!(
                        "<{element}> without {attribute}, which Vobiz documents as required: {why}"
                    ),
                );
            }
        }
    }
    (!problems.is_empty()).then(|| {
        // A warning: Vobiz documents them as required, but what it does without one (reject
        // the XML, or go on) is not documented, and a simulated call goes on.
        Finding::new(
            XML_REQUIRED_ATTRIBUTES,
            Severity::Warning,
            problems.join("; "),
        )
    })
}

/// At most 40 characters of `text`, for a message.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// `xml-action-urls`: every URL Vobiz will call or fetch is absolute http(s), or relative
/// (resolved against the callback URL), and not a host only this machine can reach.
pub fn action_urls(reply: &Reply<'_>) -> Option<Finding> {
    let nodes = reply.parsed.as_ref()?.nodes()?;
    let mut problems = Vec::new();
    let mut severity = Severity::Warning;
    let mut check = |place: String, value: &str| {
        if let Some((level, problem)) = url_problem(value) {
            severity = severity.max(level);
            note(&mut problems, format!("{place} {value:?}: {problem}"));
        }
    };
    for node in nodes {
        for (name, value) in &node.attributes {
            let is_url = URL_ATTRIBUTES.contains(&name.as_str());
            if is_url && !(name == "dialMusic" && value == "real") {
                check(format!("<{} {name}>", node.name), value);
            }
        }
        if vocabulary::URL_TEXT_ELEMENTS.contains(&node.name.as_str()) {
            check(format!("<{}>", node.name), node.text.trim());
        }
    }
    (!problems.is_empty()).then(|| Finding::new(XML_ACTION_URLS, severity, problems.join("; ")))
}
