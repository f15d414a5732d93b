//! Unit tests of the inspector's rules: following, paging, pausing, filtering, replay keys,
//! marking and diffing, views, prompts.

use std::sync::Arc;

use super::*;
use crate::exchange::{Exchange, Flag, Outcome, RequestRecord};
use crate::signature::VerdictStatus;
use crate::tui::action::Action;

pub(crate) fn summary(id: i64, event: &str) -> ExchangeSummary {
    ExchangeSummary {
        id: Some(id),
        received_at_us: 1_700_000_000_000_000 + id * 1000,
        method: "POST".into(),
        path: "/cb".into(),
        target: "/cb".into(),
        status: Some(200),
        duration_ms: Some(1.5),
        signature: VerdictStatus::Valid,
        signature_scheme: None,
        event: Some(event.into()),
        call_uuid: Some("c1".into()),
        outcome: Outcome::Forwarded,
        flags: Vec::new(),
        replay_of: None,
        error: None,
        findings: Vec::new(),
    }
}

fn exchange(id: i64, event: &str) -> Arc<Exchange> {
    let request = RequestRecord {
        method: "POST".into(),
        target: "/cb".into(),
        headers: crate::exchange::Headers(vec![(
            "content-type".into(),
            b"application/x-www-form-urlencoded".to_vec(),
        )]),
        body: bytes::Bytes::from(format!("Event={event}&CallUUID=c1")),
        ..RequestRecord::default()
    };
    let verdict = crate::signature::verify(
        &crate::signature::CallbackRequest {
            method: "POST",
            url: "https://h/cb",
            headers: &[],
            body: b"",
            extra_ports: &[],
            other_urls: &[],
        },
        &Default::default(),
    );
    let mut exchange = Exchange::received(request, verdict, 0);
    exchange.id = Some(id);
    exchange.outcome = Outcome::Forwarded;
    Arc::new(exchange)
}

fn state_with(rows: usize) -> AppState {
    let mut state = AppState::new(StatusInfo::default(), UtcOffset::UTC);
    let rows = (1..=rows as i64).map(|id| summary(id, "Hangup")).collect();
    state.load_page(rows, 0);
    state.list_height = 10;
    state
}

#[test]
fn the_newest_is_selected_and_followed() {
    let mut state = state_with(3);
    assert_eq!(state.selected_id(), Some(3));
    state.apply(ExchangeEvent::Finished(exchange(4, "Hangup")));
    assert_eq!(state.selected_id(), Some(4));
    assert_eq!(
        state.detail.as_ref().and_then(|d| d.id),
        Some(4),
        "the event carries the detail"
    );
    assert_eq!(state.unseen, 0);
}

#[test]
fn scrolling_away_stops_following_and_counts_new_arrivals() {
    let mut state = state_with(3);
    let commands = state.update(Action::Up);
    assert_eq!(commands, vec![Command::LoadDetail(2)]);
    assert!(!state.follow);
    state.apply(ExchangeEvent::Finished(exchange(4, "Hangup")));
    state.apply(ExchangeEvent::Finished(exchange(5, "Hangup")));
    assert_eq!(state.selected_id(), Some(2), "the selection stays put");
    assert_eq!(state.unseen, 2);
    state.update(Action::Last);
    assert!(state.follow);
    assert_eq!(state.selected_id(), Some(5));
    assert_eq!(state.unseen, 0);
}

#[test]
fn paging_and_first_last_stay_in_bounds_and_ask_for_older_rows() {
    let mut state = state_with(PAGE);
    assert!(state.has_older);
    state.update(Action::PageUp);
    assert_eq!(state.selected, PAGE - 1 - 10);
    // Paging up onto the first loaded row asks for the rows before it (`g` jumps to the
    // oldest page instead: see below).
    let mut commands = Vec::new();
    while state.selected > 0 {
        commands = state.update(Action::PageUp);
    }
    assert!(commands.contains(&Command::LoadOlder { before: 1 }));
    // The last page up went one row past the top (from row 9, by 10); Up, pressed while the
    // rows before it load, one more.
    state.update(Action::Up);
    assert_eq!(state.selected, 0);
    assert_eq!(state.pending_move, -2);
    state.load_older(vec![
        summary(-2, "Ring"),
        summary(-1, "Ring"),
        summary(0, "Ring"),
    ]);
    assert_eq!(state.rows.len(), PAGE + 3);
    assert_eq!(
        state.selected_id(),
        Some(1),
        "loading keeps the same row selected"
    );
    assert_eq!(state.move_on(), vec![Command::LoadDetail(-1)]);
    assert_eq!(
        state.selected_id(),
        Some(-1),
        "then the keys pressed meanwhile move on"
    );
    assert_eq!(state.pending_move, 0);
    assert!(!state.has_older);
}

#[test]
fn page_keys_pressed_while_newer_rows_load_are_not_lost() {
    let mut state = state_with(30);
    state.has_newer = true;
    state.follow = false;
    state.update(Action::First);
    // Down to the last loaded row, then two pages past it while the next page is read.
    let mut commands = Vec::new();
    while state.selected + 1 < state.rows.len() {
        commands = state.update(Action::PageDown);
    }
    assert!(
        commands.contains(&Command::LoadNewer { after: 30 }),
        "{commands:?}"
    );
    state.update(Action::PageDown);
    state.update(Action::PageDown);
    let newer: Vec<_> = (31..=80).map(|id| summary(id, "Ring")).collect();
    state.load_newer(newer);
    // One row past the last (20 + 10 from row 29), then two pages: 21 rows on from #30.
    assert_eq!(state.pending_move, 21);
    state.move_on();
    assert_eq!(state.selected_id(), Some(51));
}

#[test]
fn pause_holds_arrivals_until_resumed() {
    let mut state = state_with(2);
    state.update(Action::TogglePause);
    state.apply(ExchangeEvent::Finished(exchange(3, "Hangup")));
    assert_eq!(state.rows.len(), 2);
    assert_eq!(state.held.len(), 1);
    assert_eq!(state.total, 1, "counted although held");
    state.update(Action::TogglePause);
    assert_eq!(state.rows.len(), 3);
    assert_eq!(state.selected_id(), Some(3));
}

#[test]
fn a_filter_is_typed_applied_and_cleared() {
    let mut state = state_with(2);
    assert!(state.update(Action::StartFilter).is_empty());
    assert_eq!(state.input_mode(), InputMode::Text);
    for c in "event:Ring".chars() {
        state.update(Action::Input(c));
    }
    assert_eq!(state.update(Action::Submit), vec![Command::Reload]);
    assert_eq!(state.filter.text(), "event:Ring");
    assert_eq!(state.input_mode(), InputMode::Navigate);
    // The loop starts the reload (the old filter's rows go) and the page comes back empty.
    state.begin_reload();
    assert!(state.rows.is_empty());
    state.load_page(Vec::new(), 2);
    // Live arrivals are filtered too.
    state.apply(ExchangeEvent::Finished(exchange(3, "Hangup")));
    assert!(state.rows.is_empty());
    state.apply(ExchangeEvent::Finished(exchange(4, "Ring")));
    assert_eq!(state.selected_id(), Some(4));
    assert_eq!(state.update(Action::Back), vec![Command::Reload]);
    assert!(state.filter.is_empty());
}

#[test]
fn a_bad_filter_keeps_the_prompt_open_with_the_error() {
    let mut state = state_with(1);
    state.update(Action::StartFilter);
    for c in "nosuchfield:x".chars() {
        state.update(Action::Input(c));
    }
    assert!(state.update(Action::Submit).is_empty());
    assert!(state.input.is_some());
    assert!(state
        .message
        .as_deref()
        .unwrap_or("")
        .starts_with("filter:"));
    // Typing again: the error was about the submitted text, so it goes.
    state.update(Action::InputBackspace);
    assert_eq!(state.message, None);
    state.update(Action::Back);
    assert!(state.input.is_none());
}

#[test]
fn an_existing_export_file_is_replaced_only_after_a_yes() {
    let mut state = state_with(1);
    state.update(Action::Export);
    state.update(Action::InputClear);
    for c in "out.har".chars() {
        state.update(Action::Input(c));
    }
    assert_eq!(
        state.update(Action::Submit),
        vec![Command::Export {
            path: "out.har".into(),
            overwrite: false
        }]
    );
    // The loop found the file and asks.
    state.input = Some((Prompt::ConfirmOverwrite, "out.har".into()));
    assert_eq!(state.input_mode(), InputMode::Text);
    // A resize or the mouse is not an answer.
    state.update(Action::Resize);
    state.update(Action::Click { column: 1, row: 1 });
    assert_eq!(
        state.input,
        Some((Prompt::ConfirmOverwrite, "out.har".into()))
    );
    assert!(state.update(Action::Input('n')).is_empty());
    assert!(state.input.is_none());
    assert_eq!(
        state.message.as_deref(),
        Some("not exported: out.har kept as it was")
    );
    state.input = Some((Prompt::ConfirmOverwrite, "out.har".into()));
    assert_eq!(
        state.update(Action::Input('y')),
        vec![Command::Export {
            path: "out.har".into(),
            overwrite: true
        }]
    );
    assert!(state.input.is_none());
}

#[test]
fn replay_keys_ask_for_the_selected_exchange() {
    let mut state = state_with(3);
    state.status.auth_tokens = 1; // re-signing needs one
    assert_eq!(
        state.update(Action::ReplayAsIs),
        vec![Command::Replay {
            id: 3,
            resign: false,
            target: None
        }]
    );
    assert_eq!(
        state.update(Action::ReplayResigned),
        vec![Command::Replay {
            id: 3,
            resign: true,
            target: None
        }]
    );
    assert_eq!(
        state.update(Action::EditReplay),
        vec![Command::Edit {
            id: 3,
            resign: false
        }]
    );
    assert!(state.update(Action::ReplayTo).is_empty());
    let (prompt, _) = state.input.clone().unwrap();
    assert_eq!(prompt, Prompt::ReplayTarget);
    state.input.as_mut().unwrap().1 = "http://localhost:4000".into();
    assert_eq!(
        state.update(Action::Submit),
        vec![Command::Replay {
            id: 3,
            resign: false,
            target: Some("http://localhost:4000".into())
        }]
    );
}

#[test]
fn a_prefilled_prompt_is_cleared_or_cut_a_word_at_a_time() {
    let mut state = state_with(1);
    state.update(Action::ReplayTo);
    state.input.as_mut().unwrap().1 = "http://localhost:3000/a b  ".into();
    state.update(Action::InputDeleteWord);
    assert_eq!(state.input.as_ref().unwrap().1, "http://localhost:3000/a ");
    state.update(Action::InputDeleteWord);
    assert_eq!(state.input.as_ref().unwrap().1, "");
    state.update(Action::Input('x'));
    state.update(Action::InputClear);
    assert_eq!(state.input.as_ref().unwrap().1, "");
    assert!(state.input.is_some(), "the prompt stays open");
}

#[test]
fn nothing_to_replay_in_an_empty_list() {
    let mut state = state_with(0);
    assert!(state.update(Action::ReplayAsIs).is_empty());
    assert!(state.update(Action::Down).is_empty());
    assert!(state.update(Action::CopyCurl).is_empty());
}

#[test]
fn mark_then_diff() {
    let mut state = state_with(3);
    assert!(state.update(Action::Diff).is_empty(), "nothing marked yet");
    assert!(state.message.is_some());
    state.update(Action::Mark);
    assert_eq!(state.marked, Some(3));
    state.update(Action::Up);
    assert_eq!(
        state.update(Action::Diff),
        vec![Command::LoadDiff {
            marked: 3,
            selected: 2
        }]
    );
    state.diff = Some((exchange(3, "a"), exchange(2, "b")));
    state.update(Action::Down);
    assert_eq!(
        state.selected_id(),
        Some(2),
        "keys scroll the diff, not the list"
    );
    state.update(Action::Back);
    assert!(state.diff.is_none());
}

#[test]
fn views_tabs_help_and_quit() {
    let mut state = state_with(1);
    assert_eq!(state.update(Action::NextView), vec![Command::LoadCalls]);
    assert_eq!(state.view, View::Calls);
    state.set_calls(vec![CallSummary {
        call_uuid: "c1".into(),
        first_at_us: 0,
        last_at_us: 0,
        exchanges: 1,
        events: vec!["Hangup".into()],
        failures: 0,
    }]);
    assert_eq!(
        state.update(Action::Enter),
        vec![Command::LoadCall("c1".into())]
    );
    state.update(Action::NextView);
    assert_eq!(state.view, View::Health);
    state.update(Action::Back);
    assert_eq!(state.view, View::Exchanges);
    state.update(Action::NextTab);
    state.update(Action::NextTab);
    assert_eq!(state.tab, 2);
    state.update(Action::PrevTab);
    state.update(Action::PrevTab);
    state.update(Action::PrevTab);
    assert_eq!(state.tab, 3);
    state.update(Action::Tab(0));
    assert_eq!(state.tab, 0);
    state.update(Action::Help);
    assert!(state.help);
    state.update(Action::Back);
    assert!(!state.help);
    state.update(Action::Quit);
    assert!(state.quit);
}

fn call(uuid: &str, exchanges: u64) -> CallSummary {
    CallSummary {
        call_uuid: uuid.into(),
        first_at_us: 0,
        last_at_us: 0,
        exchanges,
        events: vec!["Ring".into()],
        failures: 0,
    }
}

fn of_call(id: i64, event: &str, uuid: &str) -> ExchangeEvent {
    let mut exchange = (*exchange(id, event)).clone();
    exchange.call_uuid = Some(uuid.into());
    ExchangeEvent::Finished(Arc::new(exchange))
}

#[test]
fn the_call_view_follows_arrivals_and_keeps_its_selection() {
    let mut state = state_with(1);
    state.apply(of_call(2, "Ring", "c1"));
    assert_eq!(
        state.refresh_calls(),
        vec![],
        "nothing is read while another view is shown"
    );
    // Entering the view reads what arrived meanwhile.
    assert_eq!(state.update(Action::NextView), vec![Command::LoadCalls]);
    state.set_calls(vec![call("c1", 2)]);
    assert_eq!(state.refresh_calls(), vec![], "nothing new arrived");

    state.update(Action::Enter);
    state.set_call_timeline(vec![summary(1, "Ring"), summary(2, "Hangup")]);
    assert_eq!(state.focus, Focus::Detail);
    state.update(Action::Down);
    let scroll = state.detail_scroll;

    // A callback of another call, then one of the open call: one read each, whatever the
    // number of arrivals.
    state.apply(of_call(3, "Ring", "c2"));
    assert_eq!(state.refresh_calls(), vec![Command::LoadCalls]);
    state.apply(of_call(4, "Hangup", "c1"));
    state.apply(of_call(5, "Hangup", "c1"));
    assert_eq!(
        state.refresh_calls(),
        vec![Command::LoadCalls, Command::RefreshCall("c1".into())]
    );
    assert_eq!(state.refresh_calls(), vec![]);

    // The newer call comes in above; the selection stays on c1, the focus and scroll stay.
    state.set_calls(vec![call("c2", 1), call("c1", 4)]);
    assert_eq!(state.calls[state.call_selected].call_uuid, "c1");
    state.refresh_call_timeline(vec![summary(1, "Ring"), summary(4, "Hangup")]);
    assert_eq!(state.focus, Focus::Detail);
    assert_eq!(state.detail_scroll, scroll);
    assert_eq!(state.call_timeline.len(), 2);

    // The calls polled from another process's replays count too.
    let mut replayed = summary(6, "Hangup");
    replayed.call_uuid = Some("c1".into());
    state.merge_polled(vec![replayed]);
    assert_eq!(
        state.refresh_calls(),
        vec![Command::LoadCalls, Command::RefreshCall("c1".into())]
    );
}

#[test]
fn a_failed_forward_is_the_last_error() {
    let mut state = state_with(0);
    let mut failed = (*exchange(7, "Hangup")).clone();
    failed.failed(
        Outcome::UpstreamError,
        502,
        "cannot reach your local server at http://127.0.0.1:1: connection refused".into(),
    );
    state.apply(ExchangeEvent::Finished(Arc::new(failed)));
    assert_eq!(
        state.last_error.as_ref().map(|e| e.text.as_str()),
        Some(
            "#7 POST /cb: cannot reach your local server at http://127.0.0.1:1: \
             connection refused"
        )
    );
    // A callback answered normally afterwards does not hide it: it is the *last* error.
    state.apply(ExchangeEvent::Finished(exchange(8, "Hangup")));
    let last = state.last_error.as_ref().unwrap();
    assert!(last.text.starts_with("#7 "), "{last:?}");
    assert_eq!(
        last.answered_since, 1,
        "the status line says how many went well since"
    );
}

#[test]
fn rows_beyond_the_cap_are_dropped_from_memory() {
    let mut state = state_with(0);
    for id in 1..=(MAX_ROWS as i64 + 10) {
        let mut exchange = (*exchange(id, "Hangup")).clone();
        exchange.add_flag(Flag::Slow);
        state.apply(ExchangeEvent::Finished(Arc::new(exchange)));
    }
    assert_eq!(state.rows.len(), MAX_ROWS);
    assert!(state.has_older);
    assert_eq!(state.selected_id(), Some(MAX_ROWS as i64 + 10));
    assert_eq!(state.total, MAX_ROWS as u64 + 10);
}

#[test]
fn rows_from_another_process_are_merged_once() {
    let mut state = state_with(2);
    state.merge_polled(vec![summary(3, "Hangup")]);
    assert_eq!(state.rows.len(), 3);
    state.merge_polled(vec![summary(3, "Hangup")]);
    assert_eq!(
        state.rows.len(),
        3,
        "an id already shown is replaced, not added"
    );
    assert_eq!(state.newest_id(), Some(3));
}

#[test]
fn store_and_connection_errors_show_in_the_status_line() {
    let mut state = state_with(0);
    state.apply(ExchangeEvent::StoreError("disk full".into()));
    assert_eq!(
        state.last_error.as_ref().map(|e| e.text.as_str()),
        Some("disk full")
    );
    state.apply(ExchangeEvent::ConnectionFailed {
        client_addr: None,
        reason: "TLS handshake failed".into(),
    });
    assert!(state
        .last_error
        .as_ref()
        .unwrap()
        .text
        .contains("TLS handshake failed"));
}

#[test]
fn arrivals_during_a_reload_are_kept_with_the_page() {
    let mut state = state_with(0);
    state.begin_reload();
    state.apply(ExchangeEvent::Finished(exchange(5, "Hangup")));
    state.apply(ExchangeEvent::Finished(exchange(6, "Hangup")));
    // The page was read before #6 was committed.
    state.load_page(vec![summary(4, "Ring"), summary(5, "Hangup")], 5);
    let ids: Vec<_> = state.rows.iter().filter_map(|r| r.id).collect();
    assert_eq!(ids, vec![4, 5, 6]);
    assert_eq!(state.selected_id(), Some(6));
}

/// The store's counts read with a reload hold some arrivals and not others: each exchange is
/// counted once either way.
#[test]
fn a_reload_counts_each_exchange_once_whichever_side_of_the_tally_it_arrives() {
    use crate::store::Tally;
    let tally = |total: u64, newest: i64| {
        let mut tally = Tally {
            total,
            newest: Some(newest),
            ..Tally::default()
        };
        tally.by_class[2] = total;
        tally.by_verdict[Tally::verdict_index(summary(1, "Hangup").signature)] = total;
        tally
    };
    let mut state = state_with(0);
    state.begin_reload();
    // #5 committed before the store was counted, #6 after; both arrive during the reload.
    state.apply(ExchangeEvent::Finished(exchange(5, "Hangup")));
    state.apply(ExchangeEvent::Finished(exchange(6, "Hangup")));
    state.load_page(vec![summary(4, "Ring"), summary(5, "Hangup")], 5);
    state.tallied(&tally(5, 5));
    assert_eq!(state.total, 6, "#6 added back to the store's 5");
    assert_eq!(state.health.total(), 6);
    // #7 was committed before the next count but is delivered after it; #8 after both.
    state.begin_reload();
    state.load_page(vec![summary(7, "Hangup")], 7);
    state.tallied(&tally(7, 7));
    state.apply(ExchangeEvent::Finished(exchange(7, "Hangup")));
    assert_eq!(state.total, 7, "#7 is in the store's count already");
    assert_eq!(state.health.total(), 7);
    state.apply(ExchangeEvent::Finished(exchange(8, "Hangup")));
    assert_eq!((state.total, state.health.total()), (8, 8));
    // #9 was still pending when the store was counted ("no status"); its end moves it.
    state.begin_reload();
    state.load_page(Vec::new(), 9);
    let mut pending_then = tally(9, 9);
    pending_then.by_class = [1, 0, 8, 0, 0, 0];
    pending_then.pending = vec![9];
    state.tallied(&pending_then);
    let mut answered = summary(9, "Hangup");
    answered.status = Some(200);
    state.merge_polled(vec![answered]);
    assert_eq!(state.health.by_class, [0, 0, 9, 0, 0, 0], "moved to 2xx");
    assert_eq!(state.total, 9);
    assert_eq!(
        state.health.paths["/cb"].count, 5,
        "the path's figures count each arrival once (the start-up page was empty)"
    );
}

/// A callback still waiting on the local server: shown at once, followed to its end in place,
/// counted once (with its final status), and dropped from a filter it no longer matches.
#[test]
fn a_pending_exchange_shows_at_once_and_becomes_its_end_in_place() {
    let pending = |id: i64| {
        let mut exchange = (*exchange(id, "Hangup")).clone();
        exchange.outcome = Outcome::Pending;
        ExchangeEvent::Pending(Arc::new(exchange))
    };
    let mut state = state_with(2);
    let total = state.total;
    state.apply(pending(3));
    assert_eq!(state.selected_id(), Some(3), "followed at once");
    assert_eq!(state.rows.len(), 3);
    assert_eq!(state.total, total, "not counted until it ends");
    assert_eq!(
        state.detail.as_ref().map(|d| d.outcome),
        Some(Outcome::Pending)
    );
    state.apply(ExchangeEvent::Finished(exchange(3, "Hangup")));
    assert_eq!(state.rows.len(), 3, "replaced in place");
    assert_eq!(state.total, total + 1);
    assert_eq!(
        state.detail.as_ref().map(|d| d.outcome),
        Some(Outcome::Forwarded)
    );

    // Under `status:none`, a pending row leaves the list when it ends.
    state.filter = crate::filter::Filter::parse("status:none").unwrap();
    state.begin_reload();
    state.load_page(Vec::new(), 3);
    let total = state.total;
    state.apply(pending(4));
    assert_eq!(
        state.rows.iter().filter_map(|r| r.id).collect::<Vec<_>>(),
        [4]
    );
    let mut answered = (*exchange(4, "Hangup")).clone();
    answered.failed(Outcome::UpstreamError, 502, "no answer".into());
    state.apply(ExchangeEvent::Finished(Arc::new(answered)));
    assert!(state.rows.is_empty(), "{:?}", state.rows);
    assert_eq!(state.total, total + 1, "counted once");
}

/// The whole store's counts as a reload reads them, holding exchanges up to `newest`.
fn tally_through(total: u64, newest: i64) -> crate::store::Tally {
    crate::store::Tally {
        total,
        newest: Some(newest),
        ..Default::default()
    }
}

/// What the loop's store poll does, against `store` (every recorded row, ascending ids).
fn poll(state: &mut AppState, store: &[ExchangeSummary]) {
    let after = state.poll_after();
    let rows = store
        .iter()
        .filter(|r| r.id.is_some_and(|id| id > after))
        .take(PAGE)
        .cloned()
        .collect();
    state.merge_polled(rows);
}

fn ids(state: &AppState) -> Vec<i64> {
    state.rows.iter().filter_map(|r| r.id).collect()
}

/// Clearing a filter keeps the exchange that was selected under it, among its neighbours:
/// older and newer ones, and polling the store then finds nothing new.
#[test]
fn clearing_the_filter_keeps_the_selected_exchange_in_view() {
    let event = |id: i64| if id % 10 == 0 { "Ring" } else { "Hangup" };
    let mut store: Vec<_> = (1..=100).map(|id| summary(id, event(id))).collect();
    let mut state = state_with(100);
    state.update(Action::StartFilter);
    for c in "event:Ring".chars() {
        state.update(Action::Input(c));
    }
    state.update(Action::Submit);
    state.begin_reload();
    let rings = store.iter().filter(|r| r.id.unwrap() % 10 == 0).cloned();
    state.load_page(rings.collect(), 100);
    while state.selected_id() != Some(50) {
        state.update(Action::Up);
    }

    assert_eq!(state.update(Action::Back), vec![Command::Reload]);
    assert_eq!(state.keep_around, Some(50), "the reload reads around #50");
    state.begin_reload();
    state.load_page_around(store[..50].to_vec(), store[50..].to_vec(), 100);
    state.tallied(&tally_through(100, 100));
    assert_eq!(state.selected_id(), Some(50));
    assert_eq!(ids(&state), (1..=100).collect::<Vec<_>>(), "newer ones too");
    assert!(!state.has_newer && !state.follow);
    assert_eq!(state.keep_around, None);
    let (top, kept) = (state.list_top.get(), state.selected);
    assert!(
        top < kept && kept + 1 < top + state.list_height,
        "the window shows rows above and below #50: top {top}"
    );

    for _ in 0..3 {
        poll(&mut state, &store);
    }
    assert_eq!(state.unseen, 0, "nothing arrived");
    // A real arrival is listed, and is the one new row.
    store.push(summary(101, "Hangup"));
    poll(&mut state, &store);
    state.apply(ExchangeEvent::Finished(exchange(101, "Hangup")));
    poll(&mut state, &store);
    assert_eq!(state.unseen, 1);
    assert_eq!(ids(&state).last(), Some(&101));
    assert_eq!(state.selected_id(), Some(50));
}

/// After `g` on a store longer than a page, the rows past the loaded window are not new:
/// polling does not count them (nor read them again and again); an exchange that does
/// arrive counts once, whether it comes pending, finished or found by the poll.
#[test]
fn rows_past_the_loaded_window_are_not_counted_as_new() {
    let newest = 3 * PAGE as i64;
    let mut store: Vec<_> = (1..=newest).map(|id| summary(id, "Hangup")).collect();
    let mut state = state_with(0);
    state.begin_reload();
    state.load_page(store[2 * PAGE..].to_vec(), newest as u64);
    state.tallied(&tally_through(newest as u64, newest));
    assert_eq!(state.update(Action::First), vec![Command::LoadOldest]);
    state.load_oldest(store[..PAGE].to_vec());
    assert!(state.has_newer);

    for _ in 0..4 {
        poll(&mut state, &store);
    }
    assert_eq!(state.unseen, 0, "nothing arrived");
    assert_eq!(state.poll_after(), newest, "the poll asks only for news");

    let mut pending = (*exchange(newest + 1, "Hangup")).clone();
    pending.outcome = Outcome::Pending;
    state.apply(ExchangeEvent::Pending(Arc::new(pending)));
    store.push(summary(newest + 1, "Hangup"));
    poll(&mut state, &store);
    state.apply(ExchangeEvent::Finished(exchange(newest + 1, "Hangup")));
    poll(&mut state, &store);
    assert_eq!(state.unseen, 1, "one arrival");
    assert_eq!(
        state.rows.len(),
        PAGE,
        "read when the user scrolls down to it"
    );
    assert_eq!(state.total, newest as u64 + 1);
}

/// In the detail pane, g/G go to the top and the end of what it shows, and scrolling stops
/// at the end (as drawn last); in the list they still select the first and the last row.
#[test]
fn g_and_capital_g_in_the_detail_pane_go_to_its_top_and_end() {
    let mut state = state_with(5);
    state.update(Action::First);
    assert_eq!(state.selected_id(), Some(1));
    state.update(Action::Enter);
    assert_eq!(state.focus, Focus::Detail);
    state.detail_scroll_max.set(40); // what the view found: 40 lines more than fit
    state.update(Action::Last);
    assert_eq!(state.detail_scroll, 40);
    assert_eq!(state.selected_id(), Some(1), "the selection stays");
    state.update(Action::PageDown);
    assert_eq!(state.detail_scroll, 40, "not past the end");
    state.update(Action::Up);
    assert_eq!(state.detail_scroll, 39, "one key back up, not thousands");
    state.update(Action::First);
    assert_eq!(state.detail_scroll, 0);
    state.update(Action::Back);
    state.update(Action::Last);
    assert_eq!(state.selected_id(), Some(5));
}

#[test]
fn g_in_a_long_list_starts_from_the_oldest_page_at_once() {
    let mut state = state_with(3);
    state.has_older = true;
    assert_eq!(state.update(Action::First), vec![Command::LoadOldest]);
    assert!(state.loading);
    assert!(state.update(Action::First).is_empty(), "one load at a time");
    let oldest: Vec<ExchangeSummary> = (1..=PAGE as i64).map(|id| summary(id, "Ring")).collect();
    state.load_oldest(oldest);
    assert_eq!(state.selected_id(), Some(1));
    assert!(!state.has_older && state.has_newer && !state.follow);
    // G goes back to the newest: a reload, as the newest rows are not loaded.
    assert_eq!(state.update(Action::Last), vec![Command::Reload]);
}

/// In the call view, g/G (Home/End) move the call list; the exchange list it hides keeps its
/// selection, and following.
#[test]
fn g_and_capital_g_in_the_call_view_move_the_call_list() {
    let mut state = state_with(5);
    state.update(Action::NextView);
    state.set_calls(vec![call("c3", 1), call("c2", 1), call("c1", 1)]);
    state.update(Action::Down);
    assert_eq!(state.call_selected, 1);
    state.update(Action::Last);
    assert_eq!(state.call_selected, 2);
    state.update(Action::First);
    assert_eq!(state.call_selected, 0);
    assert_eq!(state.selected_id(), Some(5));
    assert!(state.follow, "still following");
}

/// The health view has nothing to move: the keys leave the hidden exchange list alone.
#[test]
fn keys_in_the_health_view_leave_the_hidden_list_alone() {
    let mut state = state_with(5);
    state.update(Action::NextView);
    state.update(Action::NextView);
    assert_eq!(state.view, View::Health);
    for action in [
        Action::Last,
        Action::Up,
        Action::PageUp,
        Action::First,
        Action::Down,
        Action::PageDown,
        Action::Enter,
    ] {
        assert_eq!(state.update(action.clone()), vec![], "{action:?}");
    }
    assert_eq!(state.selected_id(), Some(5));
    assert!(state.follow, "still following");
    assert_eq!(state.focus, Focus::List);
}

/// In the call and health views the keys that act on the selected exchange do nothing but
/// say where they work: the exchange they would act on is hidden.
#[test]
fn exchange_keys_in_other_views_act_on_nothing_hidden() {
    let mut state = state_with(5);
    state.status.auth_tokens = 1;
    for view in [View::Calls, View::Health] {
        state.update(Action::NextView);
        assert_eq!(state.view, view);
        for action in [
            Action::ReplayAsIs,
            Action::ReplayResigned,
            Action::EditReplay,
            Action::EditReplayResigned,
            Action::ReplayTo,
            Action::Mark,
            Action::Diff,
            Action::CopyCurl,
        ] {
            assert_eq!(state.update(action.clone()), vec![], "{view:?} {action:?}");
            assert!(
                state.input.is_none() && state.marked.is_none(),
                "{action:?}"
            );
            let message = state.message.clone().unwrap_or_default();
            assert!(message.contains("v goes back to it"), "{message}");
        }
        assert!(state.follow, "still following");
    }
    // In the exchange list they act.
    state.update(Action::NextView);
    assert_eq!(state.view, View::Exchanges);
    assert_eq!(state.update(Action::CopyCurl), vec![Command::CopyCurl(5)]);
}

/// The diff scrolls within its rows (as last drawn): `j` stops at its end, `G` and `g` go to
/// its end and top; the list under it stays as it was.
#[test]
fn the_diff_scrolls_within_its_rows_and_the_list_under_it_stays() {
    let mut state = state_with(5);
    state.update(Action::Mark);
    state.update(Action::Up);
    assert_eq!(
        state.update(Action::Diff),
        vec![Command::LoadDiff {
            marked: 5,
            selected: 4
        }]
    );
    state.show_diff(exchange(5, "Hangup"), exchange(4, "Ring"));
    state.overlay_scroll_max.set(5); // what the view found: 5 rows more than fit
    for _ in 0..60 {
        state.update(Action::Down);
    }
    assert_eq!(state.overlay_scroll, 5, "not past the end");
    state.update(Action::Up);
    assert_eq!(state.overlay_scroll, 4, "one key back up");
    state.update(Action::First);
    assert_eq!(state.overlay_scroll, 0);
    state.update(Action::Last);
    assert_eq!(state.overlay_scroll, 5);
    assert_eq!(state.selected_id(), Some(4), "the list did not move");
    assert!(!state.follow);
    state.update(Action::Back);
    assert!(state.diff.is_none());
    assert_eq!(state.selected_id(), Some(4));
}

/// The curl command and the help take the keys while shown: they scroll or close them, and
/// nothing reaches the list, the view or the replay keys under them.
#[test]
fn overlays_keep_the_keys_from_what_they_hide() {
    let others = [
        Action::ReplayAsIs,
        Action::ReplayResigned,
        Action::EditReplay,
        Action::EditReplayResigned,
        Action::ReplayTo,
        Action::StartFilter,
        Action::Export,
        Action::NextView,
        Action::Mark,
        Action::Diff,
        Action::CopyCurl,
        Action::ToggleFollow,
        Action::TogglePause,
        Action::ToggleRaw,
        Action::NextTab,
        Action::Tab(2),
        Action::Enter,
        Action::Click { column: 1, row: 3 },
    ];
    let untouched = |state: &AppState| {
        assert_eq!(state.selected_id(), Some(5));
        assert!(state.follow && !state.paused && !state.raw);
        assert_eq!(
            (state.view, state.focus, state.tab),
            (View::Exchanges, Focus::List, 0)
        );
        assert_eq!((state.input.as_ref(), state.marked), (None, None));
    };
    let mut state = state_with(5);
    assert_eq!(state.update(Action::CopyCurl), vec![Command::CopyCurl(5)]);
    state.show_popup(Popup {
        title: "#5 as curl".into(),
        text: "curl …".into(),
    });
    state.overlay_scroll_max.set(3);
    for action in others.clone() {
        assert_eq!(state.update(action.clone()), vec![], "{action:?}");
    }
    for _ in 0..3 {
        state.update(Action::Up);
    }
    state.update(Action::Last);
    assert_eq!(state.overlay_scroll, 3, "G scrolls the popup to its end");
    untouched(&state);
    // `?` opens the help over it; Esc closes the help, then the popup.
    state.update(Action::Help);
    state.update(Action::NextView);
    state.update(Action::Back);
    assert!(!state.help && state.popup.is_some());
    state.update(Action::Back);
    assert!(state.popup.is_none());

    state.update(Action::Help);
    for action in others {
        assert_eq!(state.update(action.clone()), vec![], "{action:?}");
        assert!(state.help, "{action:?} leaves the help open");
    }
    state.update(Action::Down);
    untouched(&state);
    state.update(Action::Help);
    assert!(!state.help, "? closes it");
}

/// A filter applied while paused applies to what was held: the rows held until then matched
/// the old filter; the reload reads those that match the new one from the store.
#[test]
fn a_filter_applied_while_paused_applies_to_the_held_rows() {
    let mut state = state_with(2);
    state.update(Action::TogglePause);
    state.apply(ExchangeEvent::Finished(exchange(3, "Hangup")));
    state.apply(ExchangeEvent::Finished(exchange(4, "Ring")));
    assert_eq!(state.held.len(), 2);
    state.update(Action::StartFilter);
    for c in "event:Ring".chars() {
        state.update(Action::Input(c));
    }
    assert_eq!(state.update(Action::Submit), vec![Command::Reload]);
    state.begin_reload();
    state.load_page(vec![summary(4, "Ring")], 4);
    state.apply(ExchangeEvent::Finished(exchange(5, "Hangup")));
    state.apply(ExchangeEvent::Finished(exchange(6, "Ring")));
    assert_eq!(state.held.len(), 1, "#6; #5 does not match");
    state.update(Action::TogglePause);
    assert_eq!(ids(&state), [4, 6]);
}

/// With the memory cap reached and the user scrolled up, each arrival drops the oldest
/// row: the window stays on the rows it showed, rather than moving one row per arrival.
#[test]
fn arrivals_at_the_memory_cap_leave_the_window_on_the_same_rows() {
    let mut state = state_with(MAX_ROWS);
    state.list_height = 40;
    for _ in 0..30 {
        state.update(Action::Up);
    }
    // As last drawn: the selection on the 21st of the window's rows.
    state.list_top.set(state.selected - 20);
    let shown = |state: &AppState| {
        let top = crate::tui::view::window_start(
            state.rows.len(),
            state.selected,
            state.list_height,
            state.list_top.get(),
        );
        (state.rows[top].id, state.selected - top)
    };
    let before = shown(&state);
    let selected = state.selected_id();
    let newest = MAX_ROWS as i64;
    for id in newest + 1..=newest + 10 {
        state.merge_polled(vec![summary(id, "Hangup")]);
    }
    assert_eq!(state.rows.len(), MAX_ROWS);
    assert_eq!(state.selected_id(), selected);
    assert_eq!(
        shown(&state),
        before,
        "the same first row, the selection as far down"
    );
    // So for a row that comes in above the window (its id was taken before the newest's).
    let dropped = state.rows.pop_front().and_then(|r| r.id).unwrap();
    state.selected -= 1;
    state.list_top.set(state.list_top.get() - 1);
    let before = shown(&state);
    state.merge_polled(vec![summary(dropped, "Hangup")]);
    assert_eq!(shown(&state), before);
}

/// `E` (edit, then re-sign) without an auth token says so before the editor opens, rather
/// than after the edit is made and thrown away.
#[test]
fn re_signing_without_a_token_refuses_before_the_editor_opens_or_following_stops() {
    let mut state = state_with(3);
    assert_eq!(state.status.auth_tokens, 0);
    assert_eq!(state.update(Action::EditReplayResigned), vec![]);
    let message = state.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("#3 not opened: re-signing needs an auth token"),
        "{message}"
    );
    assert!(state.follow, "nothing was replayed: following goes on");
    // R the same: said at once, and following goes on.
    assert_eq!(state.update(Action::ReplayResigned), vec![]);
    let message = state.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("#3 not replayed: re-signing needs an auth token"),
        "{message}"
    );
    assert!(state.follow);
    state.status.auth_tokens = 1;
    assert_eq!(
        state.update(Action::EditReplayResigned),
        vec![Command::Edit {
            id: 3,
            resign: true
        }]
    );
    assert_eq!(
        state.update(Action::ReplayResigned),
        vec![Command::Replay {
            id: 3,
            resign: true,
            target: None
        }]
    );
}

/// Under a filter, rows another process wrote that it hides are counted all the same (the
/// top bar counts the whole store), and those it shows once.
#[test]
fn rows_a_filter_hides_are_counted_in_the_whole_store() {
    let mut state = state_with(0);
    state.update(Action::StartFilter);
    for c in "event:Ring".chars() {
        state.update(Action::Input(c));
    }
    state.update(Action::Submit);
    state.begin_reload();
    state.load_page(vec![summary(2, "Ring")], 3);
    state.tallied(&tally_through(3, 3));
    assert_eq!(state.newest_counted(), 3);
    // What the loop's poll reads: the rows that match, then all of them for the counts.
    let written = [
        summary(4, "Hangup"),
        summary(5, "Ring"),
        summary(6, "Hangup"),
    ];
    state.merge_polled(vec![written[1].clone()]);
    state.count_polled(&written[1..]);
    state.count_polled(&written);
    assert_eq!(state.total, 6);
    assert_eq!(ids(&state), [2, 5]);
    assert_eq!(state.newest_counted(), 6);
}
