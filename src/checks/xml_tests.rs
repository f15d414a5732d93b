//! One test per XML lint rule, both sides: a good answer passes every rule, and each rule
//! fires on the mistake it is for.

use super::delivery_tests::{answer, callback};
use super::xml::*;
use super::{findings, url_problem, Context, Finding, Severity};
use crate::exchange::{Exchange, Outcome};

const GOOD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Gather action="https://hooks.example.com/menu" inputType="dtmf" executionTimeout="5">
    <Speak voice="WOMAN">Press 1 &amp; wait</Speak>
  </Gather>
  <Dial action="/dialed" callbackUrl="next" dialMusic="real"><Number>919876543210</Number></Dial>
  <Record action="https://hooks.example.com/rec" redirect="false"/>
  <Redirect method="POST">https://hooks.example.com/again</Redirect>
</Response>"#;

/// An answer callback whose local server replied `body` as `content_type` with `status`.
fn answered(status: u16, content_type: &str, body: &str) -> Exchange {
    let mut exchange = callback("/answer", "CallUUID=c1&Event=StartApp&From=9198");
    answer(&mut exchange, status, content_type, body);
    exchange
}

fn lint_xml(body: &str) -> Vec<Finding> {
    lint(&answered(200, "application/xml", body))
}

fn finding<'a>(found: &'a [Finding], rule: &str) -> Option<&'a Finding> {
    found.iter().find(|f| f.rule == rule)
}

#[test]
fn a_good_answer_passes_every_rule() {
    assert_eq!(lint_xml(GOOD), vec![]);
    assert_eq!(
        lint(&answered(200, "text/xml; charset=utf-8", "<Response/>")),
        vec![]
    );
}

#[test]
fn xml_status_fires_on_anything_but_200() {
    let found = lint(&answered(500, "text/html", "<h1>oops</h1>"));
    assert_eq!(found.len(), 1, "only the status, not the body: {found:?}");
    assert_eq!(found[0].rule, XML_STATUS);
    assert!(finding(&lint(&answered(201, "application/xml", GOOD)), XML_STATUS).is_some());
    assert!(finding(&lint_xml(GOOD), XML_STATUS).is_none());
}

#[test]
fn xml_content_type_fires_on_html_and_on_none() {
    let found = lint(&answered(200, "text/html; charset=utf-8", GOOD));
    let html = finding(&found, XML_CONTENT_TYPE);
    assert!(html.is_some_and(|f| f.message.contains("text/html") && f.severity == Severity::Error));
    let mut bare = answered(200, "text/xml", GOOD);
    if let Some(response) = bare.response.as_mut() {
        response.headers.0.clear();
    }
    assert!(finding(&lint(&bare), XML_CONTENT_TYPE).is_some());
    assert!(finding(&lint(&answered(200, "Text/XML", GOOD)), XML_CONTENT_TYPE).is_none());
}

#[test]
fn xml_size_fires_over_100_kb() {
    let speak = format!("<Speak>{}</Speak>", "a".repeat(1000));
    let big = format!("<Response>{}</Response>", speak.repeat(110));
    let found = lint_xml(&big);
    assert!(finding(&found, XML_SIZE).is_some_and(|f| f.message.contains("100 KB")));
    let small = format!("<Response>{}</Response>", speak.repeat(90));
    assert!(finding(&lint_xml(&small), XML_SIZE).is_none());
}

#[test]
fn xml_well_formed_fires_on_broken_xml() {
    for broken in [
        "<Response><Speak>Tom & Jerry</Speak></Response>",
        "<Response><Speak>hi</Response>",
        "<Response><Speak>hi</Speak>",
        "",
        "<Response/>trailing",
        "<Response><Speak>&nbsp;</Speak></Response>",
    ] {
        let found = lint_xml(broken);
        assert!(
            finding(&found, XML_WELL_FORMED).is_some(),
            "{broken:?}: {found:?}"
        );
        assert!(
            finding(&found, XML_ROOT).is_none(),
            "no structural noise: {found:?}"
        );
    }
    assert!(finding(
        &lint_xml("<Response><Speak>&lt;ok&#33;</Speak></Response>"),
        XML_WELL_FORMED
    )
    .is_none());
}

#[test]
fn xml_root_fires_unless_one_plain_response() {
    assert!(finding(&lint_xml("<Reply><Speak>hi</Speak></Reply>"), XML_ROOT).is_some());
    assert!(finding(&lint_xml("<Response/><Response/>"), XML_ROOT).is_some());
    let with_attribute = lint_xml(r#"<Response lang="en"/>"#);
    assert!(finding(&with_attribute, XML_ROOT).is_some_and(|f| f.severity == Severity::Warning));
    assert!(finding(&lint_xml("<Response></Response>"), XML_ROOT).is_none());
}

#[test]
fn xml_known_elements_names_plivo_verbs_and_unknown_or_misplaced_ones() {
    let plivo =
        lint_xml(r#"<Response><GetDigits action="/x"><Speak>hi</Speak></GetDigits></Response>"#);
    let f = finding(&plivo, XML_KNOWN_ELEMENTS);
    assert!(f.is_some_and(|f| f.message.contains("GetDigits") && f.message.contains("Gather")));
    let unknown = lint_xml("<Response><Say>hi</Say></Response>");
    assert!(finding(&unknown, XML_KNOWN_ELEMENTS).is_some_and(|f| f.message.contains("<Say>")));
    let misplaced = lint_xml("<Response><Dial><Speak>hi</Speak></Dial></Response>");
    assert!(finding(&misplaced, XML_KNOWN_ELEMENTS)
        .is_some_and(|f| f.message.contains("inside <Dial>")));
    assert!(finding(&lint_xml(GOOD), XML_KNOWN_ELEMENTS).is_none());
}

#[test]
fn xml_known_elements_fires_on_text_where_vobiz_takes_none() {
    let bare = lint_xml("<Response>hello there<Speak>hi</Speak></Response>");
    let f = finding(&bare, XML_KNOWN_ELEMENTS);
    assert!(
        f.is_some_and(|f| f.message.contains("\"hello there\"")
            && f.message.contains("inside <Response>")
            && f.message.contains("<Speak>")),
        "{f:?}"
    );
    let in_gather = lint_xml(r#"<Response><Gather action="/g">press 1</Gather></Response>"#);
    assert!(finding(&in_gather, XML_KNOWN_ELEMENTS).is_some());
    // Text is what Speak, Number and Redirect hold; whitespace between elements is nothing.
    let spoken = "<Response>\n  <Speak>hi</Speak>\n  <Dial>919876543210</Dial>\n</Response>";
    assert!(finding(&lint_xml(spoken), XML_KNOWN_ELEMENTS).is_none());
}

/// Vobiz asks for gzip: a gzipped answer is read unzipped, not judged broken; a coding Vobiz
/// did not ask for is named.
#[test]
fn a_gzipped_answer_is_read_as_vobiz_reads_it() {
    let zipped = super::encoding::gzip(GOOD.as_bytes());
    let with_coding = |coding: &str, body: Vec<u8>| {
        let mut exchange = answered(200, "application/xml", "");
        let response = exchange.response.as_mut().unwrap();
        response
            .headers
            .0
            .push(("Content-Encoding".into(), coding.into()));
        response.body = body.into();
        lint(&exchange)
    };
    assert_eq!(with_coding("gzip", zipped), Vec::<Finding>::new());
    let br = with_coding("br", GOOD.as_bytes().to_vec());
    assert!(
        finding(&br, XML_CONTENT_TYPE).is_some_and(|f| f.message.contains("gzip only")),
        "{br:?}"
    );
}

#[test]
fn xml_required_attributes_fires_on_a_gather_without_action() {
    let found =
        lint_xml(r#"<Response><Gather inputType="dtmf"><Speak>x</Speak></Gather></Response>"#);
    let f = finding(&found, XML_REQUIRED_ATTRIBUTES);
    assert!(
        f.is_some_and(
            |f| f.severity == Severity::Warning && f.message.contains("<Gather> without action")
        ),
        "{f:?}"
    );
    assert!(finding(&lint_xml(GOOD), XML_REQUIRED_ATTRIBUTES).is_none());
}

#[test]
fn xml_known_attributes_suggests_execution_timeout() {
    let found = lint_xml(r#"<Response><Gather action="/g" timeout="5" colour="red"/></Response>"#);
    let f = finding(&found, XML_KNOWN_ATTRIBUTES);
    assert!(
        f.is_some_and(|f| f.message.contains("executionTimeout") && f.message.contains("colour")),
        "{f:?}"
    );
    // Dial's timeout is real.
    assert!(finding(
        &lint_xml(r#"<Response><Dial timeout="20">9198</Dial></Response>"#),
        XML_KNOWN_ATTRIBUTES
    )
    .is_none());
    assert!(finding(&lint_xml(GOOD), XML_KNOWN_ATTRIBUTES).is_none());
}

#[test]
fn xml_action_urls_fires_on_unreachable_or_broken_urls() {
    let found = lint_xml(
        r#"<Response><Gather action="http://localhost:3000/menu"/><Record callbackUrl="ftp://x/y"/><Redirect> </Redirect></Response>"#,
    );
    let f = finding(&found, XML_ACTION_URLS);
    assert!(
        f.is_some_and(|f| f.severity == Severity::Error
            && f.message.contains("localhost")
            && f.message.contains("ftp")
            && f.message.contains("empty")),
        "{f:?}"
    );
    assert_eq!(url_problem("https://hooks.example.com/a?b=1"), None);
    assert_eq!(url_problem("/relative/path"), None);
    assert_eq!(url_problem("next"), None);
    assert!(url_problem("http://192.168.1.5/x").is_some_and(|(s, _)| s == Severity::Warning));
    assert!(url_problem("localhost:3000/x").is_some_and(|(s, _)| s == Severity::Error));
    assert!(finding(&lint_xml(GOOD), XML_ACTION_URLS).is_none());
}

#[test]
fn only_callbacks_that_expect_xml_are_linted() {
    let mut hangup = callback("/hangup", "CallUUID=c1&Event=Hangup");
    answer(&mut hangup, 200, "text/plain", "ok");
    assert!(findings(&hangup, &Context::default()).is_empty());
    let mut gather = callback("/menu", "CallUUID=c1&Digits=1&InputType=dtmf");
    answer(&mut gather, 200, "text/html", GOOD);
    assert!(finding(&findings(&gather, &Context::default()), XML_CONTENT_TYPE).is_some());
    // The tool's own 502 is explained by the error, not linted.
    let mut failed = answered(200, "application/xml", GOOD);
    failed.failed(Outcome::UpstreamError, 502, "refused".into());
    assert!(lint(&failed).is_empty());
}
