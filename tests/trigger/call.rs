//! `trigger call` against a scripted Vobiz-XML server: the sequence of requests, their
//! events and signatures, the printed timeline, and the ways a call stops early.

use super::script::{self, route, Route};
use super::{common, run_binary, verdict, MAIN_TOKEN, TOKEN};
use vobiz_tunnel::signature::VerdictStatus;

const ANSWER: &str = "<Response><Speak>Hi</Speak><Gather action=\"/gather\" method=\"POST\">\
<Speak>Press 1</Speak></Gather></Response>";
const DIAL: &str = "<Response><Dial action=\"/dial-action\" callbackUrl=\"/dial-cb\">\
<Number>+918067891234</Number></Dial></Response>";

#[tokio::test]
async fn a_call_follows_the_xml() {
    let mut server = script::start(&[
        ("/ring", route("")),
        ("/answer", route(ANSWER)),
        ("/gather", Route { require: Some(("Digits", "1")), ..route(DIAL) }),
        ("/dial-cb", route("")),
        ("/dial-action", route("<Response><Record action=\"/record\" callbackUrl=\"/record-cb\" redirect=\"true\"/></Response>")),
        ("/record", route("<Response><Redirect>/next</Redirect></Response>")),
        ("/record-cb", route("")),
        ("/next", route("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Hangup/></Response>")),
    ])
    .await;
    let (code, out, err) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &server.url("/answer"),
        "--ring-url",
        &server.url("/ring"),
        "--digits",
        "1",
        "--auth-token",
        TOKEN,
        "--main-auth-token",
        MAIN_TOKEN,
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let hits = server.drain();
    let seen: Vec<(&str, Option<&str>)> = hits
        .iter()
        .map(|h| (h.path.as_str(), h.field("Event")))
        .collect();
    assert_eq!(
        seen,
        [
            ("/ring", Some("Ring")),
            ("/answer", Some("StartApp")),
            ("/gather", None),
            ("/dial-cb", Some("DialAnswer")),
            ("/dial-cb", Some("DialHangup")),
            ("/dial-action", Some("DialAction")),
            ("/record", Some("Record")),
            ("/record-cb", Some("RecordStop")),
            ("/next", Some("Redirect")),
            ("/answer", Some("Hangup")),
        ]
    );
    let uuid = hits[0].field("CallUUID").unwrap();
    for hit in &hits {
        assert_eq!(hit.method, "POST");
        assert_eq!(hit.field("CallUUID"), Some(uuid), "{}", hit.path);
        assert_eq!(
            verdict("POST", &hit.url, &hit.headers, &hit.body),
            VerdictStatus::Valid,
            "{}",
            hit.path
        );
    }
    assert_eq!(hits[2].field("Digits"), Some("1"));
    assert_eq!(hits[3].field("DialBLegTo"), Some("918067891234"));
    assert_eq!(hits[6].field("RecordingID"), hits[7].field("RecordingID"));
    assert!(hits[7].field("RecordUrl").unwrap().starts_with("https://"));
    let hangup = &hits[9];
    assert_eq!(hangup.field("HangupSource"), Some("Answer XML"));
    let duration: u64 = hangup.field("Duration").unwrap().parse().unwrap();
    assert!(duration > 30, "the dial alone lasted 30 s: {duration}");
    // The timeline: one line per step, in order.
    let order = [
        "Ring",
        "StartApp",
        "Speak \"Hi\"",
        "Speak \"Press 1\"",
        "Gather: Digits=1",
        "Dial +918067891234",
        "DialAnswer",
        "DialHangup",
        "DialAction",
        "Record 10 s",
        "RecordStop",
        "Redirect",
        "<Hangup>",
        "Hangup",
        "call completed",
    ];
    let mut at = 0;
    for want in order {
        let found = out[at..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} missing or out of order in\n{out}"));
        at += found + want.len();
    }
    assert!(
        out.contains(&format!(
            "{}/dial-action  200",
            "POST http://".to_owned() + &server.addr.to_string()
        )),
        "{out}"
    );
}

#[tokio::test]
async fn speech_and_timeouts_and_the_end_of_the_xml() {
    let mut server = script::start(&[
        (
            "/answer",
            route("<Response><Gather action=\"g1\" inputType=\"speech\"/></Response>"),
        ),
        ("/g1", route("<Response><Gather action=\"g2\"/></Response>")),
        ("/g2", route("<Response><Wait length=\"5\"/></Response>")),
        ("/hangup", route("")),
    ])
    .await;
    let (code, out, _) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &server.url("/answer"),
        "--hangup-url",
        &server.url("/hangup"),
        "--speech",
        "yes",
        "--auth-token",
        TOKEN,
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["ok"], true);
    let hits = server.drain();
    assert_eq!(hits[1].field("Speech"), Some("yes"));
    assert_eq!(hits[1].field("InputType"), Some("speech"));
    assert_eq!(
        hits[2].field("Digits"),
        Some(""),
        "no digits left: the timeout callback"
    );
    assert_eq!(hits[3].path, "/hangup");
    assert_eq!(hits[3].field("HangupSource"), Some("Vobiz"));
}

#[tokio::test]
async fn xml_vobiz_cannot_read_stops_the_call() {
    let broken = route("<Response><Speak>Hi</Response>");
    // Well-formed, but labelled as HTML: Vobiz does not parse it either.
    let html = Route {
        content_type: "text/html",
        ..route("<Response><Hangup/></Response>")
    };
    for (answer, reason) in [
        (broken, "xml-well-formed: not well-formed XML"),
        (html, "Content-Type text/html"),
    ] {
        let mut server = script::start(&[("/answer", answer)]).await;
        let (code, out, _) = run_binary(&[
            "trigger",
            "call",
            "--answer-url",
            &server.url("/answer"),
            "--auth-token",
            TOKEN,
        ])
        .await;
        assert_eq!(code, 1);
        assert!(
            out.contains("call FAILED: StartApp POST") && out.contains(reason),
            "{out}"
        );
        assert_eq!(
            server.drain().len(),
            1,
            "no hangup after an answer Vobiz cannot read"
        );
    }
}

#[tokio::test]
async fn loops_and_failing_urls_stop_the_call() {
    let mut server = script::start(&[
        (
            "/answer",
            route("<Response><Redirect>/a</Redirect></Response>"),
        ),
        (
            "/a",
            route("<Response><Redirect method=\"GET\">b</Redirect></Response>"),
        ),
        ("/b", route("<Response><Redirect>/a</Redirect></Response>")),
        (
            "/menu",
            route("<Response><Gather action=\"/menu\"/></Response>"),
        ),
        (
            "/broken",
            route("<Response><Gather action=\"/missing\"/></Response>"),
        ),
    ])
    .await;
    let (code, out, _) =
        run_binary(&["trigger", "call", "--answer-url", &server.url("/answer")]).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("redirect loop") && out.contains("/a → ") && out.contains("/b → "),
        "{out}"
    );
    let hits = server.drain();
    assert_eq!(
        hits.iter().map(|h| h.method.as_str()).collect::<Vec<_>>(),
        ["POST", "POST", "GET"]
    );

    let (code, out, _) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &server.url("/menu"),
        "--max-requests",
        "5",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(out.contains("stopped after 5 requests"), "{out}");

    let (code, out, _) =
        run_binary(&["trigger", "call", "--answer-url", &server.url("/broken")]).await;
    assert_eq!(code, 1);
    assert!(out.contains("/missing: HTTP 404"), "{out}");
}

/// An app tracks a conference's members by its ConferenceUUID: enter and exit of one room
/// carry the same, another room its own, and a room entered again the one it had.
#[tokio::test]
async fn each_conference_keeps_one_uuid_for_the_call() {
    let mut server = script::start(&[
        (
            "/answer",
            route(
                "<Response><Conference callbackUrl=\"/conf\">room1</Conference>\
                 <Conference callbackUrl=\"/conf\">room2</Conference>\
                 <Conference callbackUrl=\"/conf\">room1</Conference></Response>",
            ),
        ),
        ("/conf", route("")),
    ])
    .await;
    let (code, out, _) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &server.url("/answer"),
        "--auth-token",
        TOKEN,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let hits = server.drain();
    let events: Vec<(&str, &str, &str)> = hits
        .iter()
        .filter(|hit| hit.path == "/conf")
        .map(|hit| {
            let field = |key| hit.field(key).unwrap();
            (
                field("ConferenceName"),
                field("Event"),
                field("ConferenceUUID"),
            )
        })
        .collect();
    let names: Vec<(&str, &str)> = events.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(
        names,
        [
            ("room1", "ConferenceEnter"),
            ("room1", "ConferenceExit"),
            ("room2", "ConferenceEnter"),
            ("room2", "ConferenceExit"),
            ("room1", "ConferenceEnter"),
            ("room1", "ConferenceExit"),
        ]
    );
    let room1 = events[0].2;
    assert!(
        [1, 4, 5].iter().all(|&i| events[i].2 == room1),
        "{events:?}"
    );
    assert_eq!(events[2].2, events[3].2);
    assert_ne!(events[2].2, room1);
}

/// A `<Stream>`'s status callback echoes that element: its WebSocket URL as ServiceURL, and
/// the statusCallbackUrl and method it was sent with.
#[tokio::test]
async fn stream_status_echoes_the_stream_element() {
    let mut server = script::start(&[
        (
            "/answer",
            route(
                "<Response><Stream statusCallbackUrl=\"stream-status\" \
                 statusCallbackMethod=\"GET\">wss://media.example.com/audio</Stream>\
                 <Hangup/></Response>",
            ),
        ),
        ("/stream-status", route("")),
    ])
    .await;
    let (code, out, _) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &server.url("/answer"),
        "--auth-token",
        TOKEN,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let hits = server.drain();
    let status = hits
        .iter()
        .find(|hit| hit.path == "/stream-status")
        .unwrap();
    assert_eq!(status.method, "GET");
    assert_eq!(status.field("Event"), Some("StartStream"));
    assert_eq!(
        status.field("ServiceURL"),
        Some("wss://media.example.com/audio")
    );
    assert_eq!(
        status.field("status_callback_url"),
        Some(server.url("/stream-status").as_str())
    );
    assert_eq!(status.field("status_callback_method"), Some("GET"));
}

/// A status callback that fails (Ring, a dial's callbackUrl, the hangup) does not end the
/// call, as it does not at Vobiz: the call goes on, the failures are listed, and it exits 1.
#[tokio::test]
async fn failed_status_callbacks_do_not_stop_the_call() {
    let mut server = script::start(&[
        (
            "/answer",
            route(
                "<Response><Dial callbackUrl=\"/no-dial-cb\">\
                 <Number>+918067891234</Number></Dial><Hangup/></Response>",
            ),
        ),
        ("/hangup", route("")),
    ])
    .await;
    let (code, out, err) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &server.url("/answer"),
        "--ring-url",
        &server.url("/no-ring"),
        "--hangup-url",
        &server.url("/hangup"),
        "--auth-token",
        TOKEN,
    ])
    .await;
    assert_eq!(code, 1, "{out}{err}");
    let hits = server.drain();
    let seen: Vec<(&str, Option<&str>)> = hits
        .iter()
        .map(|h| (h.path.as_str(), h.field("Event")))
        .collect();
    assert_eq!(
        seen,
        [
            ("/no-ring", Some("Ring")),
            ("/answer", Some("StartApp")),
            ("/no-dial-cb", Some("DialAnswer")),
            ("/no-dial-cb", Some("DialHangup")),
            ("/hangup", Some("Hangup")),
        ]
    );
    assert!(
        out.contains("call FAILED: 3 of 5 requests failed (the call went on"),
        "{out}"
    );
    for failed in [
        "  Ring POST http://",
        "/no-ring: HTTP 404",
        "  DialAnswer POST",
        "  DialHangup POST",
    ] {
        assert!(out.contains(failed), "{failed:?} in\n{out}");
    }
    assert!(
        out.contains("FAILED: HTTP 404: Vobiz treats the callback as failed; the call goes on"),
        "{out}"
    );

    let (code, out, _) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &server.url("/answer"),
        "--ring-url",
        &server.url("/no-ring"),
        "--json",
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["failures"].as_array().unwrap().len(), 3, "{json}");

    // A failed hangup is the last word: nothing goes on after it.
    let (code, out, _) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &server.url("/answer"),
        "--hangup-url",
        &server.url("/no-hangup"),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    let last = out
        .lines()
        .rev()
        .find(|l| l.contains("FAILED: HTTP 404"))
        .unwrap();
    assert!(last.ends_with("; Vobiz would retry it"), "{out}");
}

/// With --unsigned or --bad-signature every request of the call is a forgery: an app that
/// refuses them passes (nothing to follow after a refused StartApp: the hangup comes), and
/// one that accepts them fails, on each request it accepted.
#[tokio::test]
async fn a_forged_call_passes_only_when_refused() {
    const ANSWER: &str = "<Response><Gather action=\"/gather\"/></Response>";
    let signed_only = |body| Route {
        signed_only: true,
        ..route(body)
    };
    let mut server = script::start(&[
        ("/answer", signed_only(ANSWER)),
        ("/gather", signed_only("<Response><Hangup/></Response>")),
        ("/lax/answer", route(ANSWER)),
    ])
    .await;
    // Signed, the app plays the call through.
    let (code, out, _) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &server.url("/answer"),
        "--auth-token",
        TOKEN,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(server.drain().len(), 3);

    for forgery in ["--unsigned", "--bad-signature"] {
        let (code, out, _) = run_binary(&[
            "trigger",
            "call",
            "--answer-url",
            &server.url("/answer"),
            "--auth-token",
            TOKEN,
            forgery,
        ])
        .await;
        assert_eq!(code, 0, "{forgery}: {out}");
        assert!(out.contains("refused: no XML to follow"), "{out}");
        assert!(
            out.contains("call completed: your server refused all 2 requests"),
            "{out}"
        );
        let hits = server.drain();
        let events: Vec<Option<&str>> = hits.iter().map(|hit| hit.field("Event")).collect();
        assert_eq!(events, [Some("StartApp"), Some("Hangup")], "{forgery}");

        // An app that takes a forgery fails; the call follows its answer to the next one.
        let (code, out, _) = run_binary(&[
            "trigger",
            "call",
            "--answer-url",
            &server.url("/lax/answer"),
            "--hangup-url",
            &server.url("/answer"),
            "--auth-token",
            TOKEN,
            forgery,
        ])
        .await;
        assert_eq!(code, 1, "{forgery}: {out}");
        assert!(
            out.contains("call FAILED: 1 of 3 requests failed (your server must refuse"),
            "{out}"
        );
        assert!(
            out.contains("  StartApp POST http://")
                && out.contains("/lax/answer: HTTP 200: your server accepted a callback"),
            "{out}"
        );
        assert_eq!(server.drain().len(), 3, "StartApp, Gather and Hangup");
    }
}

/// Behind a tunnel the app is called at its public origin, which its XML names: with
/// `--public-url` every request is signed for the URL Vobiz would have called, and a URL of
/// the XML at the public origin reaches the app through the local one.
#[tokio::test]
async fn behind_a_public_url_every_request_is_signed_for_it() {
    const PUBLIC: &str = "https://hooks.example.com";
    let mut server = script::start(&[
        (
            "/answer",
            route("<Response><Gather action=\"https://hooks.example.com/gather\"/></Response>"),
        ),
        ("/gather", route("<Response><Hangup/></Response>")),
    ])
    .await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = common::config(&dir, &server.url(""));
    config.public_url = Some(common::parse_base(PUBLIC));
    let harness = common::Harness::start(config, dir.clone()).await;
    let certs = dir.path().join("certs");
    let (code, out, err) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &harness.url("/answer"),
        "--public-url",
        PUBLIC,
        "--digits",
        "1",
        "--certs-dir",
        certs.to_str().unwrap(),
        "--auth-token",
        TOKEN,
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "requests to https://localhost:{} are signed for {PUBLIC} (--public-url)",
            harness.port()
        )),
        "{out}"
    );
    let paths: Vec<String> = server.drain().into_iter().map(|hit| hit.path).collect();
    assert_eq!(paths, ["/answer", "/gather", "/answer"], "{out}");
    for id in 1..=3 {
        let exchange = harness.recorded(id).await;
        assert_eq!(
            exchange.verdict.status,
            VerdictStatus::Valid,
            "#{id} {}: {:?}",
            exchange.request.target,
            exchange.verdict
        );
    }

    let (code, _, err) = run_binary(&[
        "trigger",
        "call",
        "--answer-url",
        &harness.url("/answer"),
        "--public-url",
        "ftp://hooks.example.com",
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--public-url: the scheme must be http or https, not ftp"),
        "{err}"
    );
}

/// `trigger call | head -1`: the reader leaves, the call does not. It is played to its end
/// (the app gets its hangup) and the command exits as it would have, without a panic.
#[tokio::test]
async fn a_reader_that_leaves_does_not_cut_the_call_short() {
    use tokio::io::AsyncBufReadExt;
    let mut server = script::start(&[(
        "/answer",
        Route {
            delay: std::time::Duration::from_millis(300),
            ..route("<Response><Speak>Hi</Speak></Response>")
        },
    )])
    .await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vobiz-tunnel"))
        .args(["trigger", "call", "--answer-url", &server.url("/answer")])
        .args(["--auth-token", TOKEN])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    common::within(tokio::io::BufReader::new(stdout).read_line(&mut first))
        .await
        .unwrap();
    assert!(first.starts_with("call "), "{first}");
    // The reader is gone (dropped with its BufReader) while StartApp waits for its answer.
    let output = common::within(child.wait_with_output()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let events: Vec<String> = server
        .drain()
        .iter()
        .filter_map(|hit| hit.field("Event").map(String::from))
        .collect();
    assert_eq!(events, ["StartApp", "Hangup"]);
}
