//! Snapshots of the inspector's screens. `view::render` is pure, so a fixed `AppState` (fixed
//! ids, timestamps, UTC, status facts, and real signature verdicts) always draws the same
//! frame; each test renders it on a `TestBackend` and compares the text with the reviewed
//! snapshot in `tests/snapshots/`. Colours are not in the text; the few that carry meaning
//! are asserted separately.
//!
//! Create or update snapshots with `INSTA_UPDATE=always cargo test --test tui_snapshots` (or
//! `cargo insta review`), and read every changed one before committing it.

use std::sync::Arc;

use bytes::Bytes;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use time::UtcOffset;
use unicode_width::UnicodeWidthStr;

use vobiz_tunnel::exchange::{
    Exchange, Flag, Headers, Outcome, RequestRecord, ResponseRecord, Timings, TlsInfo,
};
use vobiz_tunnel::filter::Filter;
use vobiz_tunnel::pipeline::ExchangeEvent;
use vobiz_tunnel::signature::{
    sign_v3_docs, verify, AuthToken, CallbackRequest, Keys, VerdictStatus,
};
use vobiz_tunnel::store::{CallSummary, ExchangeSummary};
use vobiz_tunnel::tui::action::Action;
use vobiz_tunnel::tui::state::{AppState, Command, Focus, Popup, Prompt, StatusInfo, View};
use vobiz_tunnel::tui::view;

const TOKEN: &str = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
/// 2026-06-08 11:41:20.130 UTC: the first exchange; the others follow by a few seconds.
const T0: i64 = 1_780_918_880_130_000;
const CALL: &str = "7d1c2c5e-5b0a-4c59-9d1e-3f0e2b7a9c11";
const OTHER_CALL: &str = "0b9e4f6a-2c1d-4e8f-a7b3-5d6c9e0f1a2b";

const HANGUP_BODY: &str = "AnswerTime=2026-06-08+11%3A41%3A24&BillDuration=120&BillRate=0.00500\
&CallStatus=completed&CallUUID=7d1c2c5e-5b0a-4c59-9d1e-3f0e2b7a9c11&Direction=inbound&Duration=118\
&EndTime=2026-06-08+11%3A43%3A22&Event=Hangup&From=919876543210&HangupCause=NORMAL_CLEARING\
&HangupCauseCode=4000&HangupCauseName=Normal+Hangup&HangupSource=Caller&ParentAuthID=MA_XXXXXXXX\
&SessionStart=2026-06-08+11%3A41%3A20.130248&StartTime=2026-06-08+11%3A41%3A20&To=918000000000\
&TotalCost=0.01000";

const RESPONSE_XML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
<Speak voice=\"WOMAN\" language=\"en-US\">Thanks for calling. Goodbye!</Speak>\
<Wait length=\"1\"/><Hangup reason=\"completed\"/></Response>";

// ---------------------------------------------------------------------------------------------
// Rendering

/// The buffer as text, one line per row, trailing spaces removed. A wide character's
/// continuation cells are skipped, as a terminal shows them.
fn buffer_text(buffer: &Buffer) -> String {
    let width = buffer.area.width as usize;
    let mut lines = Vec::new();
    for row in buffer.content.chunks(width) {
        let mut line = String::new();
        let mut skip = 0usize;
        for cell in row {
            if skip == 0 {
                line.push_str(cell.symbol());
            }
            skip = skip.max(cell.symbol().width()).saturating_sub(1);
        }
        lines.push(line.trim_end().to_string());
    }
    lines.join("\n")
}

fn draw(state: &AppState, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| view::render(frame, state)).unwrap();
    terminal
}

fn screen(state: &AppState, width: u16, height: u16) -> String {
    buffer_text(draw(state, width, height).backend().buffer())
}

/// Snapshot of one state at one size; the size is in the snapshot's description.
macro_rules! assert_screen {
    ($name:expr, $state:expr, $width:expr, $height:expr) => {{
        let text = screen(&$state, $width, $height);
        insta::with_settings!({ description => format!("{}x{}", $width, $height), omit_expression => true }, {
            insta::assert_snapshot!($name, text);
        });
        text
    }};
}

/// The row of the screen that contains `needle`.
fn row_of(buffer: &Buffer, needle: &str) -> Option<u16> {
    let text = buffer_text(buffer);
    text.lines()
        .position(|line| line.contains(needle))
        .map(|y| y as u16)
}

// ---------------------------------------------------------------------------------------------
// Fixtures: real requests, real verdicts.

fn keys() -> Keys {
    Keys {
        auth_tokens: vec![AuthToken::new(TOKEN)],
        main_auth_tokens: Vec::new(),
    }
}

fn status_info() -> StatusInfo {
    StatusInfo {
        listen_url: "https://127.0.0.1:8443".into(),
        forward: "http://localhost:3000".into(),
        store_path: "/home/dev/.local/share/vobiz-tunnel/exchanges.db".into(),
        auth_tokens: 1,
        main_auth_tokens: 0,
    }
}

/// How the callback was signed.
#[derive(Clone, Copy, PartialEq)]
enum Signed {
    /// V3 for the URL it was sent to.
    Valid,
    /// V3 for the same URL without the port: invalid, with a near-miss explanation.
    WrongPort,
    /// No signature headers.
    Unsigned,
    /// Signed, but checked without a token.
    Unchecked,
}

fn form_body(event: &str, call: &str) -> String {
    match event {
        "Hangup" => HANGUP_BODY.replace(CALL, call),
        _ => format!(
            "CallUUID={call}&CallStatus=in-progress&Direction=inbound&Event={event}\
             &From=919876543210&To=918000000000"
        ),
    }
}

struct Spec {
    id: i64,
    path: &'static str,
    event: &'static str,
    call: &'static str,
    signed: Signed,
    nonce: &'static str,
    status: u16,
    /// Milliseconds from receipt to the end.
    duration_ms: i64,
    /// Seconds after [`T0`].
    at_s: i64,
}

impl Spec {
    fn new(id: i64, event: &'static str) -> Spec {
        Spec {
            id,
            path: "/vobiz/hangup",
            event,
            call: CALL,
            signed: Signed::Valid,
            nonce: "12345678901234567890",
            status: 200,
            duration_ms: 12,
            at_s: id * 2,
        }
    }
}

fn exchange(spec: &Spec) -> Exchange {
    let url = format!("https://localhost:8443{}", spec.path);
    let body = form_body(spec.event, spec.call);
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("host".into(), b"localhost:8443".to_vec()),
        ("user-agent".into(), b"Vobiz".to_vec()),
        (
            "content-type".into(),
            b"application/x-www-form-urlencoded".to_vec(),
        ),
        ("content-length".into(), body.len().to_string().into_bytes()),
        ("accept".into(), b"*/*".to_vec()),
    ];
    let token = AuthToken::new(TOKEN);
    let signed_url = match spec.signed {
        Signed::WrongPort => format!("https://localhost{}", spec.path),
        _ => url.clone(),
    };
    if spec.signed != Signed::Unsigned {
        headers.push((
            "x-vobiz-signature-v3".into(),
            sign_v3_docs(&token, &signed_url, spec.nonce).into_bytes(),
        ));
        headers.push((
            "x-vobiz-signature-v3-nonce".into(),
            spec.nonce.as_bytes().to_vec(),
        ));
    }
    let headers = Headers(headers);
    let pairs = headers.to_text_pairs();
    let keys = match spec.signed {
        Signed::Unchecked => Keys::default(),
        _ => keys(),
    };
    let verdict = verify(
        &CallbackRequest {
            method: "POST",
            url: &url,
            headers: &pairs,
            body: body.as_bytes(),
            extra_ports: &[8443],
            other_urls: &[],
        },
        &keys,
    );
    let request = RequestRecord {
        method: "POST".into(),
        target: spec.path.into(),
        http_version: "HTTP/1.1".into(),
        host: Some("localhost:8443".into()),
        public_url: url,
        headers,
        body: Bytes::from(body),
        body_truncated: false,
        client_addr: Some("203.0.113.7:53422".into()),
        tls: TlsInfo {
            version: Some("TLSv1.3".into()),
            alpn: Some("http/1.1".into()),
            sni: Some("localhost".into()),
        },
    };
    let received = T0 + spec.at_s * 1_000_000;
    let mut exchange = Exchange::received(request, verdict, received);
    exchange.id = Some(spec.id);
    exchange.outcome = Outcome::Forwarded;
    let (content_type, body) = if spec.status == 200 {
        (
            "application/xml",
            Bytes::from_static(RESPONSE_XML.as_bytes()),
        )
    } else {
        (
            "text/plain; charset=utf-8",
            Bytes::from_static(b"upstream failure\n"),
        )
    };
    exchange.response = Some(ResponseRecord {
        status: spec.status,
        headers: Headers(vec![
            ("content-type".into(), content_type.as_bytes().to_vec()),
            ("content-length".into(), body.len().to_string().into_bytes()),
        ]),
        body,
    });
    let done = received + spec.duration_ms * 1000;
    exchange.timings = Timings {
        received_us: received,
        forwarded_us: Some(received + 350),
        first_byte_us: Some(done - 400),
        done_us: Some(done),
    };
    if spec.duration_ms > 3000 {
        exchange.add_flag(Flag::Slow);
    }
    exchange
}

/// The eight exchanges the list shows: every verdict mark, a slow one, a replay of #1 that
/// reused its nonce, and an upstream failure.
fn exchanges() -> Vec<Exchange> {
    // #7: `r` on #1: the same bytes again, so the nonce is reused.
    let mut replay = exchange(&Spec {
        path: "/vobiz/answer",
        ..Spec::new(7, "StartApp")
    });
    replay.replay_of = Some(1);
    replay.nonce_reused_of = Some(1);
    replay.add_flag(Flag::Replay);
    replay.add_flag(Flag::NonceReused);
    replay.request.client_addr = None;
    let mut failed = exchange(&Spec {
        nonce: "88888888888888888888",
        status: 502,
        duration_ms: 4,
        ..Spec::new(8, "Hangup")
    });
    failed.failed(
        Outcome::UpstreamError,
        502,
        "cannot reach the local server at http://localhost:3000: connection refused".into(),
    );
    vec![
        exchange(&Spec {
            path: "/vobiz/answer",
            ..Spec::new(1, "StartApp")
        }),
        exchange(&Spec {
            path: "/vobiz/ring",
            nonce: "22222222222222222222",
            ..Spec::new(2, "Ring")
        }),
        exchange(&Spec {
            signed: Signed::WrongPort,
            nonce: "33333333333333333333",
            ..Spec::new(3, "Hangup")
        }),
        exchange(&Spec {
            path: "/vobiz/action",
            call: OTHER_CALL,
            signed: Signed::Unsigned,
            ..Spec::new(4, "Speak")
        }),
        exchange(&Spec {
            path: "/vobiz/action",
            call: OTHER_CALL,
            signed: Signed::Unchecked,
            nonce: "55555555555555555555",
            ..Spec::new(5, "Record")
        }),
        exchange(&Spec {
            path: "/vobiz/answer",
            call: OTHER_CALL,
            nonce: "66666666666666666666",
            duration_ms: 3_412,
            ..Spec::new(6, "StartApp")
        }),
        replay,
        failed,
    ]
}

fn by_id(id: i64) -> Arc<Exchange> {
    Arc::new(exchanges().into_iter().find(|e| e.id == Some(id)).unwrap())
}

/// A state as the loop leaves it after start-up: the newest page loaded, the newest row
/// selected and its detail loaded.
fn loaded_state() -> AppState {
    let mut state = AppState::new(status_info(), UtcOffset::UTC);
    let rows: Vec<ExchangeSummary> = exchanges().iter().map(ExchangeSummary::of).collect();
    let total = rows.len() as u64;
    state.load_page(rows, total);
    state.list_height = 14;
    state
}

/// [`loaded_state`] with `id` selected and its detail shown.
fn selecting(id: i64) -> AppState {
    let mut state = loaded_state();
    let index = state.rows.iter().position(|r| r.id == Some(id)).unwrap();
    state.selected = index;
    state.follow = index + 1 == state.rows.len();
    state.set_detail(by_id(id));
    state
}

fn detail_on(id: i64, tab: usize) -> AppState {
    let mut state = selecting(id);
    state.tab = tab;
    state.focus = Focus::Detail;
    state
}

// ---------------------------------------------------------------------------------------------
// The fixtures are what they claim to be.

#[test]
fn fixtures_carry_real_verdicts() {
    let list = exchanges();
    let status = |id: i64| list[id as usize - 1].verdict.status;
    assert_eq!(status(1), VerdictStatus::Valid);
    assert_eq!(status(3), VerdictStatus::Invalid);
    assert_eq!(status(4), VerdictStatus::Unsigned);
    assert_eq!(status(5), VerdictStatus::Unchecked);
    let near_miss = list[2]
        .verdict
        .would_match
        .as_ref()
        .expect("a near miss is explained");
    assert!(
        near_miss.url.starts_with("https://localhost/"),
        "{near_miss:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The list

#[test]
fn list_with_every_mark_and_flag() {
    let state = selecting(7);
    let text = assert_screen!("list_120x36", state, 120, 36);
    for needle in [
        "✓ valid",
        "✗ INVALID",
        "- unsigned",
        "? unchecked",
        "slow",
        "↺#1 reused",
        "upstream",
    ] {
        assert!(text.contains(needle), "{needle} is on screen");
    }
}

#[test]
fn list_wide_side_by_side() {
    let state = selecting(3);
    let text = assert_screen!("list_wide_200x50", state, 200, 50);
    assert!(text.contains("↺#1 reused"));
}

#[test]
fn list_narrow_80x24() {
    let state = selecting(7);
    let text = assert_screen!("list_narrow_80x24", state, 80, 24);
    // Narrow rows have no flags column: the verdict keeps at least its mark.
    assert!(text.contains("✗"));
}

/// Narrower terminals drop whole columns rather than cut the status or the duration's unit.
#[test]
fn list_in_small_terminals_keeps_status_and_duration_whole() {
    let state = selecting(7);
    for (name, width, height) in [("list_60x16", 60, 16), ("list_40x12", 40, 12)] {
        let text = screen(&state, width, height);
        insta::with_settings!({ description => format!("{width}x{height}"), omit_expression => true }, {
            insta::assert_snapshot!(name, text);
        });
        let row = text
            .lines()
            .find(|line| line.contains("#7"))
            .unwrap_or_else(|| panic!("{name}: row #7 shown\n{text}"));
        assert!(row.contains(" 200 "), "{name}: whole status in {row:?}");
        assert!(
            row.contains(" ms"),
            "{name}: duration with its unit in {row:?}"
        );
    }
}

/// Long ids are whole in the list at every width, side by side at 160 columns too: a cut
/// `#2949` would name another exchange than #29498.
#[test]
fn long_ids_are_never_cut() {
    for first in [29_491, 1_000_001, 12_345_671] {
        let mut state = AppState::new(status_info(), UtcOffset::UTC);
        let rows: Vec<ExchangeSummary> = exchanges()
            .iter()
            .enumerate()
            .map(|(n, exchange)| ExchangeSummary {
                id: Some(first + n as i64),
                ..ExchangeSummary::of(exchange)
            })
            .collect();
        let total = rows.len() as u64;
        state.load_page(rows, total);
        state.marked = Some(first);
        if first == 29_491 {
            assert_screen!("list_long_ids_160x16", state, 160, 16);
        }
        for width in [40, 56, 60, 80, 99, 100, 120, 160, 200] {
            let text = screen(&state, width, 30);
            for n in 0..total as i64 {
                let mark = if n == 0 { '*' } else { '#' };
                let id = format!("{mark}{} ", first + n);
                assert!(text.contains(&id), "{id} at {width} columns:\n{text}");
            }
        }
    }
}

#[test]
fn the_selected_row_is_reversed_and_statuses_are_coloured() {
    let state = selecting(3);
    let terminal = draw(&state, 120, 36);
    let buffer = terminal.backend().buffer();
    let y = row_of(buffer, "#3 ").expect("row #3");
    let reversed = (1..60).any(|x| buffer[(x, y)].modifier.contains(Modifier::REVERSED));
    assert!(reversed, "the selection is highlighted");
    let y = row_of(buffer, "#8 ").expect("row #8");
    let text = buffer_text(buffer);
    let line = text.lines().nth(y as usize).unwrap();
    let x = line.find("502").unwrap();
    let x = line[..x].chars().count() as u16;
    assert_eq!(buffer[(x, y)].fg, Color::Red, "a 5xx is red");
}

#[test]
fn new_arrivals_while_not_following_are_counted() {
    let mut state = loaded_state();
    state.update(Action::Up);
    state.update(Action::Up);
    assert!(!state.follow);
    for id in 9..=11 {
        let mut next = exchange(&Spec {
            nonce: "99999999999999999999",
            ..Spec::new(id, "Hangup")
        });
        next.id = Some(id);
        state.apply(ExchangeEvent::Finished(Arc::new(next)));
    }
    state.set_detail(by_id(6));
    assert_eq!(state.unseen, 3);
    let text = assert_screen!("new_marker_120x36", state, 120, 36);
    assert!(text.contains("3 new ↓ (G)"));
}

#[test]
fn paused_holds_arrivals() {
    let mut state = selecting(8);
    state.update(Action::TogglePause);
    for id in 9..=10 {
        state.apply(ExchangeEvent::Finished(Arc::new(exchange(&Spec::new(
            id, "Hangup",
        )))));
    }
    let text = assert_screen!("paused_120x36", state, 120, 36);
    assert!(text.contains("PAUSED (2 held)"));
    // At 80 columns the mode is past the end of the top bar (see the snapshot).
    assert_screen!("paused_narrow_80x24", state, 80, 24);
}

#[test]
fn empty_store() {
    let mut state = AppState::new(status_info(), UtcOffset::UTC);
    state.load_page(Vec::new(), 0);
    let text = assert_screen!("empty_120x36", state, 120, 36);
    assert!(text.contains("No exchanges yet."));
    assert!(text.contains("https://127.0.0.1:8443"));
}

#[test]
fn empty_store_without_a_token() {
    let mut state = AppState::new(
        StatusInfo {
            auth_tokens: 0,
            ..status_info()
        },
        UtcOffset::UTC,
    );
    state.load_page(Vec::new(), 0);
    let text = assert_screen!("empty_no_token_80x24", state, 80, 24);
    // At 80 columns the store path comes first and the warning is cut after "un".
    assert!(text.contains("no token: signatures"));
    let text = screen(&state, 120, 36);
    assert!(text.contains("no token: signatures unchecked"));
}

#[test]
fn a_filter_that_matches_nothing() {
    let mut state = loaded_state();
    state.filter = Filter::parse("event:Conference").unwrap();
    state.begin_reload(); // as the loop does when the filter changes
    state.load_page(Vec::new(), 8);
    let text = assert_screen!("empty_filter_result_120x36", state, 120, 36);
    assert!(text.contains("No exchange matches the filter"));
    assert!(text.contains("filter: event:Conference"));
}

#[test]
fn a_filter_that_matches_some() {
    let mut state = loaded_state();
    state.update(Action::StartFilter);
    for c in "event:Hangup".chars() {
        state.update(Action::Input(c));
    }
    assert_eq!(state.update(Action::Submit), vec![Command::Reload]);
    state.begin_reload(); // as the loop does for Command::Reload
    let rows: Vec<ExchangeSummary> = exchanges()
        .iter()
        .filter(|e| state.filter.matches(e))
        .map(ExchangeSummary::of)
        .collect();
    assert_eq!(rows.len(), 2);
    state.load_page(rows, 8);
    state.set_detail(by_id(8));
    let text = assert_screen!("filtered_120x36", state, 120, 36);
    assert!(text.contains("filter: event:Hangup"));
}

#[test]
fn the_filter_prompt_shows_a_parse_error() {
    let mut state = selecting(8);
    state.update(Action::StartFilter);
    for c in "evnt:Hangup".chars() {
        state.update(Action::Input(c));
    }
    assert!(state.update(Action::Submit).is_empty());
    let text = assert_screen!("filter_prompt_error_120x36", state, 120, 36);
    assert!(text.contains("filter / evnt:Hangup"));
    assert!(text.contains("filter:"));
}

#[test]
fn the_filter_prompt_while_typing() {
    let mut state = selecting(8);
    state.update(Action::StartFilter);
    for c in "event:Hangup sig:inv".chars() {
        state.update(Action::Input(c));
    }
    assert_eq!(state.input.as_ref().map(|(p, _)| *p), Some(Prompt::Filter));
    assert_screen!("filter_prompt_typing_80x24", state, 80, 24);
}

#[test]
fn a_filter_longer_than_the_line_shows_where_one_types() {
    let mut state = selecting(8);
    state.update(Action::StartFilter);
    for c in format!("{}ENDMARK", "hangup ".repeat(12)).chars() {
        state.update(Action::Input(c));
    }
    let text = screen(&state, 40, 12);
    let prompt = text.lines().find(|l| l.starts_with("filter /")).unwrap();
    assert!(
        prompt.contains("…") && prompt.contains("ENDMARK█"),
        "{prompt}"
    );
}

#[test]
fn a_message_and_the_last_error_in_the_status_line() {
    let mut state = selecting(8);
    state.apply(ExchangeEvent::ConnectionFailed {
        client_addr: Some("203.0.113.9:40000".parse().unwrap()),
        reason: "TLS handshake failed: no shared cipher".into(),
    });
    let text = assert_screen!("last_error_120x36", state, 120, 36);
    assert!(text.contains("last error"));
    // Minutes later, with callbacks answered since, it says so (and turns from red to yellow).
    let answered = by_id(1);
    assert!(answered.error.is_none());
    state.apply(ExchangeEvent::Finished(answered));
    let last = state.last_error.as_mut().unwrap();
    last.at = std::time::Instant::now()
        .checked_sub(std::time::Duration::from_secs(250))
        .unwrap();
    let text = screen(&state, 120, 36);
    assert!(
        text.contains(" last error (4 min ago, 1 answered since): connection from 203.0.113.9"),
        "{text}"
    );
    state.update(Action::Mark);
    let text = assert_screen!("message_120x36", state, 120, 36);
    assert!(text.contains("marked #8"));
}

// ---------------------------------------------------------------------------------------------
// The detail tabs

#[test]
fn request_tab_with_form_fields() {
    let state = detail_on(3, 0);
    let text = assert_screen!("detail_request_200x50", state, 200, 50);
    assert!(text.contains("Form fields"));
    assert!(text.contains("HangupCause"));
}

#[test]
fn request_tab_of_a_replay() {
    let state = detail_on(7, 0);
    let text = assert_screen!("detail_request_replay_200x50", state, 200, 50);
    assert!(text.contains("replay of #1"));
    assert!(text.contains("nonce already seen in #1"));
}

/// `t` sent it elsewhere: the detail says where, not just "replay".
#[test]
fn request_tab_of_a_replay_sent_elsewhere() {
    let mut state = detail_on(7, 0);
    let mut replay = (*by_id(7)).clone();
    replay.sent_to = Some("https://staging.example.com/vobiz/answer".into());
    state.set_detail(Arc::new(replay));
    let text = screen(&state, 160, 30);
    assert!(
        text.contains("replay of #1, sent to https://staging.example.com/vobiz/answer"),
        "{text}"
    );
}

#[test]
fn request_tab_scrolled() {
    let mut state = detail_on(3, 0);
    state.detail_scroll = 12;
    assert_screen!("detail_request_scrolled_120x36", state, 120, 36);
}

#[test]
fn request_tab_narrow() {
    let state = detail_on(3, 0);
    assert_screen!("detail_request_narrow_80x24", state, 80, 24);
}

#[test]
fn raw_body_as_hex() {
    let mut state = detail_on(3, 0);
    state.raw = true;
    let text = assert_screen!("detail_request_raw_200x50", state, 200, 50);
    assert!(text.contains("00000000  41 6e 73 77"));
    assert!(!text.contains("Form fields"), "raw mode shows bytes only");
}

#[test]
fn raw_body_as_hex_narrow() {
    let mut state = detail_on(3, 0);
    state.raw = true;
    state.detail_scroll = 8;
    assert_screen!("detail_request_raw_narrow_80x24", state, 80, 24);
}

#[test]
fn response_tab_with_indented_xml() {
    let state = detail_on(3, 1);
    let text = assert_screen!("detail_response_200x50", state, 200, 50);
    assert!(text.contains("  <Speak voice=\"WOMAN\" language=\"en-US\">"));
    assert!(text.contains("    Thanks for calling. Goodbye!"));
}

#[test]
fn response_tab_of_an_upstream_failure() {
    let state = detail_on(8, 1);
    let text = assert_screen!("detail_response_failure_200x50", state, 200, 50);
    assert!(text.contains("502"));
    assert!(text.contains("upstream_error"));
}

#[test]
fn signature_tab_explains_a_near_miss() {
    let state = detail_on(3, 2);
    let text = assert_screen!("detail_signature_invalid_200x50", state, 200, 50);
    assert!(text.contains("✗ INVALID"));
    assert!(text.contains("https://localhost/vobiz/hangup"));
}

#[test]
fn signature_tab_explains_a_near_miss_at_120() {
    let state = detail_on(3, 2);
    assert_screen!("detail_signature_invalid_120x36", state, 120, 36);
}

#[test]
fn signature_tab_of_a_valid_callback() {
    let state = detail_on(1, 2);
    let text = assert_screen!("detail_signature_valid_200x50", state, 200, 50);
    assert!(text.contains("✓ valid"));
}

#[test]
fn signature_tab_unsigned_and_unchecked() {
    let state = detail_on(4, 2);
    assert_screen!("detail_signature_unsigned_200x50", state, 200, 50);
    let state = detail_on(5, 2);
    assert_screen!("detail_signature_unchecked_200x50", state, 200, 50);
}

#[test]
fn timing_tab() {
    let state = detail_on(6, 3);
    let text = assert_screen!("detail_timing_200x50", state, 200, 50);
    assert!(text.contains("2026-06-08 11:41:32.130 +00:00"));
    assert!(text.contains("TLSv1.3"));
}

#[test]
fn detail_still_loading() {
    let mut state = loaded_state();
    state.detail = None;
    let text = assert_screen!("detail_loading_120x36", state, 120, 36);
    assert!(text.contains("loading…"));
}

// ---------------------------------------------------------------------------------------------
// Other views and overlays

fn call_summaries() -> Vec<CallSummary> {
    vec![
        CallSummary {
            call_uuid: CALL.into(),
            first_at_us: T0 + 2_000_000,
            last_at_us: T0 + 16_000_000,
            exchanges: 5,
            events: ["StartApp", "Ring", "Hangup", "StartApp", "Hangup"]
                .map(String::from)
                .to_vec(),
            failures: 1,
        },
        CallSummary {
            call_uuid: OTHER_CALL.into(),
            first_at_us: T0 + 8_000_000,
            last_at_us: T0 + 12_000_000,
            exchanges: 3,
            events: ["Speak", "Record", "StartApp"].map(String::from).to_vec(),
            failures: 0,
        },
    ]
}

#[test]
fn call_view_with_a_timeline() {
    let mut state = loaded_state();
    assert_eq!(state.update(Action::NextView), vec![Command::LoadCalls]);
    state.set_calls(call_summaries());
    let timeline: Vec<ExchangeSummary> = exchanges()
        .iter()
        .filter(|e| e.call_uuid.as_deref() == Some(CALL))
        .map(ExchangeSummary::of)
        .collect();
    state.set_call_timeline(timeline);
    assert_eq!(state.view, View::Calls);
    let text = assert_screen!("calls_timeline_120x36", state, 120, 36);
    assert!(text.contains(&format!("Call {CALL}")));
    assert!(text.contains("StartApp → Ring → Hangup"));
}

#[test]
fn call_view_before_one_is_opened() {
    let mut state = loaded_state();
    state.update(Action::NextView);
    state.set_calls(call_summaries());
    let text = assert_screen!("calls_list_80x24", state, 80, 24);
    assert!(text.contains("Enter"));
}

#[test]
fn the_call_list_at_its_cap_says_it_holds_the_latest_calls() {
    let mut state = loaded_state();
    state.update(Action::NextView);
    let many: Vec<CallSummary> = (0..vobiz_tunnel::tui::view::CALLS_LISTED)
        .map(|i| CallSummary {
            call_uuid: format!("call-{i:04}"),
            ..call_summaries()[1].clone()
        })
        .collect();
    state.set_calls(many);
    let text = screen(&state, 120, 36);
    assert!(text.contains("The latest 500 calls"), "{text}");
    state.set_calls(call_summaries());
    assert!(screen(&state, 120, 36).contains("Calls (2)"));
}

#[test]
fn health_view() {
    let mut state = loaded_state();
    state.update(Action::NextView);
    state.update(Action::NextView);
    assert_eq!(state.view, View::Health);
    let text = assert_screen!("health_120x36", state, 120, 36);
    assert!(text.contains("/vobiz/answer"));
}

#[test]
fn health_view_narrow() {
    let mut state = loaded_state();
    state.view = View::Health;
    assert_screen!("health_narrow_80x24", state, 80, 24);
}

/// In a 40-column pane the percentiles stay whole; the columns after them give way.
#[test]
fn health_view_in_a_40_column_pane() {
    let mut state = loaded_state();
    state.view = View::Health;
    let text = assert_screen!("health_40x24", state, 40, 24);
    let header = text.lines().find(|line| line.contains("path")).unwrap();
    assert!(header.contains("p50") && header.contains("p95"), "{text}");
    assert!(!header.contains("failed"), "{text}");
    let answer = text.lines().find(|line| line.contains("/vobiz/a")).unwrap();
    assert!(answer.contains("12.0 ms  3.41 s"), "{text}");
}

/// Every count shows, its number beside its name, at widths where the counts lines just wrap.
#[test]
fn health_view_keeps_every_count_at_widths_where_the_lines_just_wrap() {
    let mut state = loaded_state();
    state.view = View::Health;
    for width in [40, 56, 57, 58, 70, 80] {
        let text = screen(&state, width, 24);
        for count in ["none 0", "5xx 1", "valid 5", "unchecked 1"] {
            assert!(
                text.contains(count),
                "{width} columns: {count} missing\n{text}"
            );
        }
    }
}

#[test]
fn help_overlay() {
    let mut state = selecting(8);
    state.update(Action::Help);
    let text = assert_screen!("help_120x36", state, 120, 36);
    assert!(text.contains("replay re-signed"));
    assert!(text.contains("quit"), "every binding is listed");
}

#[test]
fn help_overlay_narrow() {
    let mut state = selecting(8);
    state.update(Action::Help);
    let text = assert_screen!("help_narrow_80x24", state, 80, 24);
    assert!(
        text.contains("see README"),
        "the longest description fits 80 columns"
    );
    // Too short for every binding: ↓ scrolls the overlay (not the list behind it) to the end.
    assert!(!screen(&state, 80, 12).contains("quit"));
    for _ in 0..40 {
        state.update(Action::Down);
    }
    let text = screen(&state, 80, 12);
    assert!(
        text.contains("q  Ctrl-C") && text.contains("quit"),
        "{text}"
    );
    assert_eq!(state.selected_id(), Some(8));
    state.update(Action::Up);
    assert!(!screen(&state, 80, 12).contains("Ctrl-C"));
}

#[test]
fn copy_as_curl_shows_the_whole_command_until_esc() {
    let mut state = selecting(8);
    let exchange = by_id(8);
    let ca = std::path::Path::new("/home/dev/certs/dev-ca.pem");
    let command =
        vobiz_tunnel::export::curl_command(&exchange, &exchange.request.public_url, Some(ca));
    assert!(command.len() > 120, "longer than a line: {command}");
    state.popup = Some(Popup {
        title: "#8 as curl, copied (OSC 52)".into(),
        text: command.clone(),
    });
    let text = assert_screen!("curl_popup_120x36", state, 120, 36);
    assert!(text.contains("#8 as curl, copied (OSC 52) — Esc closes"));
    // The whole command is in the box, however it was wrapped: its lines, read between the
    // box's borders, give back the command (spaces aside).
    let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
    let top = lines
        .iter()
        .position(|l| l.iter().collect::<String>().contains("as curl"))
        .unwrap();
    let left = lines[top].iter().position(|&c| c == '┌').unwrap();
    let right = left + lines[top][left..].iter().position(|&c| c == '┐').unwrap();
    let inside: String = lines[top + 1..]
        .iter()
        .take_while(|l| l[left] == '│')
        .flat_map(|l| l[left + 1..right].iter())
        .filter(|c| !c.is_whitespace())
        .collect();
    let expected: String = command.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(inside, expected, "the whole command is shown:\n{text}");
    state.update(Action::Back);
    assert_eq!(state.popup, None, "Esc closes it");
    assert_eq!(state.view, View::Exchanges);
}

/// What a popup box shows between its borders, without whitespace (the wrapping's).
fn inside_the_box(text: &str, title: &str) -> String {
    let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
    let top = lines
        .iter()
        .position(|l| l.iter().collect::<String>().contains(title))
        .unwrap_or_else(|| panic!("{title} on screen:\n{text}"));
    // The box's corners around its title (the panes under it have corners too).
    let line: String = lines[top].iter().collect();
    let at = line[..line.find(title).unwrap()].chars().count();
    let left = lines[top][..at].iter().rposition(|&c| c == '┌').unwrap();
    let right = at + lines[top][at..].iter().position(|&c| c == '┐').unwrap();
    lines[top + 1..]
        .iter()
        .take_while(|l| l[left] == '│')
        .flat_map(|l| l[left + 1..right].iter())
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// A command longer than the screen: the popup shows its start and says which lines; ↓
/// and `G` scroll it to its end, and the list under it stays where it was.
#[test]
fn a_curl_popup_taller_than_the_screen_scrolls_to_its_end() {
    let mut state = selecting(8);
    let exchange = by_id(8);
    let ca = std::path::Path::new("/home/dev/certs/dev-ca.pem");
    let command =
        vobiz_tunnel::export::curl_command(&exchange, &exchange.request.public_url, Some(ca));
    let whole: String = command.chars().filter(|c| !c.is_whitespace()).collect();
    state.show_popup(Popup {
        title: "#8 as curl".into(),
        text: command,
    });
    let text = screen(&state, 60, 16);
    assert!(text.contains("— lines 1-"), "{text}");
    let start = inside_the_box(&text, "#8 as curl");
    assert!(
        whole.starts_with(&start) && start.len() < whole.len(),
        "{text}"
    );
    state.update(Action::Down);
    let text = screen(&state, 60, 16);
    assert!(text.contains("— lines 2-"), "{text}");
    state.update(Action::Last);
    let end = inside_the_box(&screen(&state, 60, 16), "#8 as curl");
    assert!(whole.ends_with(&end), "the end of the command:\n{end}");
    state.update(Action::First);
    assert_eq!(inside_the_box(&screen(&state, 60, 16), "#8 as curl"), start);
    assert_eq!(state.selected_id(), Some(8));
}

#[test]
fn diff_overlay() {
    let mut state = selecting(1);
    state.update(Action::Mark);
    for _ in 0..6 {
        state.update(Action::Down);
    }
    state.set_detail(by_id(7));
    assert_eq!(
        state.update(Action::Diff),
        vec![Command::LoadDiff {
            marked: 1,
            selected: 7
        }]
    );
    state.diff = Some((by_id(1), by_id(7)));
    let text = assert_screen!("diff_120x36", state, 120, 36);
    assert!(text.contains("Diff #1 ↔ #7"));
}

#[test]
fn diff_overlay_of_different_events() {
    let mut state = selecting(3);
    state.marked = Some(2);
    state.diff = Some((by_id(2), by_id(3)));
    assert_screen!("diff_events_200x50", state, 200, 50);
}

#[test]
fn an_exchange_seen_twice_is_counted_once_in_the_top_bar() {
    let mut state = loaded_state();
    let next = exchange(&Spec {
        nonce: "99999999999999999999",
        ..Spec::new(9, "Hangup")
    });
    // The store poll finds #9 before its pipeline event is drained, then the event arrives.
    state.merge_polled(vec![ExchangeSummary::of(&next)]);
    state.apply(ExchangeEvent::Finished(Arc::new(next)));
    assert_eq!(state.rows.len(), 9, "listed once");
    let text = screen(&state, 120, 36);
    let top = text.lines().next().unwrap();
    assert!(top.contains("9 stored ✓6 "), "{top}");
}

// ---------------------------------------------------------------------------------------------
// The mouse

#[test]
fn a_click_selects_the_row_under_it_and_the_wheel_scrolls_the_pane_under_it() {
    let mut state = selecting(8);
    state.list_height = view::list_height(ratatui::layout::Rect::new(0, 0, 120, 36));
    let terminal = draw(&state, 120, 36);
    let row = row_of(terminal.backend().buffer(), "#3 ").expect("row #3 on screen");
    state.update(Action::Click { column: 20, row });
    assert_eq!(state.selected_id(), Some(3));
    assert_eq!(state.focus, Focus::List);

    // A long body: the request tab of #3 scrolls. The wheel over the detail pane scrolls it,
    // though the list has the focus, and leaves the selection alone.
    let mut state = selecting(3);
    let terminal = draw(&state, 120, 36);
    let detail_row = row_of(terminal.backend().buffer(), "Form fields").expect("detail shown");
    state.update(Action::Wheel {
        column: 30,
        row: detail_row,
        down: true,
    });
    assert_eq!(state.detail_scroll, 3);
    assert_eq!(state.selected_id(), Some(3));
    // Over the list, it moves the selection.
    let list_row = row_of(terminal.backend().buffer(), "#3 ").unwrap();
    state.update(Action::Wheel {
        column: 30,
        row: list_row,
        down: false,
    });
    assert_eq!(state.selected_id(), Some(2));
    assert_eq!(state.detail_scroll, 0, "a new selection starts at its top");

    // A click on the detail pane focuses it.
    draw(&state, 120, 36);
    let detail = state.pane_areas.get().detail;
    assert!(
        detail.y > 10,
        "the detail is below the list at 120 columns: {detail:?}"
    );
    state.update(Action::Click {
        column: 30,
        row: detail.y + 1,
    });
    assert_eq!(state.focus, Focus::Detail);
}

/// A body far past what the pane lays out per frame: its start is shown, and at its end a
/// line says how much was left out and where to read it whole.
#[test]
fn a_huge_body_shows_its_start_and_what_was_left_out() {
    let mut state = detail_on(1, 0);
    let mut big = (*by_id(1)).clone();
    let line = format!("{}\n", "y".repeat(79));
    let body = line.repeat(50_000);
    big.request.body = bytes::Bytes::from(body.clone());
    big.request
        .headers
        .0
        .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
    big.request
        .headers
        .0
        .push(("content-type".into(), b"text/plain".to_vec()));
    state.set_detail(Arc::new(big));
    let top = screen(&state, 120, 100);
    assert!(top.contains("Body (4000000 bytes"), "{top}");
    state.detail_scroll = u16::MAX; // as `G` leaves it: bounded when drawn
    let end = screen(&state, 120, 40);
    // Whole lines, as many as fit.
    let left_out = body.len() - (view::SHOWN_BODY_BYTES / 80) * 80;
    assert!(
        end.contains(&format!(
            "… {left_out} more bytes not shown here (4000000 in all)"
        )) && end.contains("`vobiz-tunnel show`"),
        "{end}"
    );
}

/// A form body past what the pane shows: its fields table lists those of the part shown and
/// says that more follow.
#[test]
fn a_huge_form_body_says_its_fields_table_is_not_all() {
    let mut state = detail_on(1, 0);
    let mut big = (*by_id(1)).clone();
    let body = format!(
        "CallUUID=big1&Event=Hangup&Blob={}&After=1",
        "x".repeat(view::SHOWN_BODY_BYTES * 2)
    );
    big.request.body = bytes::Bytes::from(body);
    state.set_detail(Arc::new(big));
    let text = screen(&state, 200, 60);
    assert!(text.contains("Event") && text.contains("big1"), "{text}");
    assert!(
        text.contains("… and the fields in the part of the body not shown"),
        "{text}"
    );
    // A body shown whole has no such line.
    let mut state = detail_on(1, 0);
    state.set_detail(by_id(1));
    assert!(!screen(&state, 200, 60).contains("not shown (vobiz-tunnel show"));
}

/// A message longer than the status line is shown whole, on the lines it needs, its end
/// (often the reason) included; a short one keeps the line as it is.
#[test]
fn a_long_message_is_shown_whole() {
    let mut state = selecting(8);
    state.message = Some(
        "replay of #1 failed: the local server http://localhost:3000 cannot be reached \
         (tcp connect error: Connection refused)"
            .into(),
    );
    let text = screen(&state, 60, 20);
    assert!(
        text.contains("(tcp connect error: Connection refused)"),
        "{text}"
    );
    state.message = Some("marked #8".into());
    let text = screen(&state, 60, 20);
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("marked #8") && last.contains("? keys"),
        "{last}"
    );
}
