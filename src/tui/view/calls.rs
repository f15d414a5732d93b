//! The call view: callbacks grouped by `CallUUID`, and the opened call as a timeline
//! (Ring → StartApp → actions → Hangup), so a developer reads one call's whole story.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::theme;

/// How many of the latest calls the call view reads (a store may hold a million).
pub const CALLS_LISTED: usize = 500;
use crate::output::clock_time;
use crate::tui::state::{AppState, Focus};

/// The span, padded with spaces to `width` characters so the next column lines up.
fn pad(span: Span<'static>, width: usize) -> Span<'static> {
    let text = format!("{:<width$}", span.content);
    Span::styled(text, span.style)
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let [list_area, timeline_area] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let rows = state.calls.iter().map(|call| {
        let failures = if call.failures > 0 {
            Span::styled(
                format!("{} failed", call.failures),
                Style::new().fg(Color::Red),
            )
        } else {
            Span::raw("")
        };
        Row::new(vec![
            Cell::from(clock_time(call.first_at_us, state.offset)),
            Cell::from(call.call_uuid.clone()),
            Cell::from(call.exchanges.to_string()),
            Cell::from(call.events.join(" → ")),
            Cell::from(failures),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            // A whole UUID is 36 characters; on narrow terminals the events need the room more.
            Constraint::Length(if area.width >= 120 { 36 } else { 13 }),
            Constraint::Length(3),
            Constraint::Min(20),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new(["first", "CallUUID", "n", "events", ""])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(
        Block::bordered()
            .title(match state.calls.len() {
                CALLS_LISTED => format!(" The latest {CALLS_LISTED} calls — Enter opens one "),
                n => format!(" Calls ({n}) — Enter opens one "),
            })
            .border_style(theme::border(state.focus == Focus::List)),
    )
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut table_state = TableState::default()
        .with_selected((!state.calls.is_empty()).then_some(state.call_selected));
    frame.render_stateful_widget(table, list_area, &mut table_state);

    let start = state.call_timeline.first().map_or(0, |r| r.received_at_us);
    let mut lines: Vec<Line<'static>> = Vec::new();
    for row in &state.call_timeline {
        let offset_s = row.received_at_us.saturating_sub(start) as f64 / 1_000_000.0;
        lines.push(Line::from(vec![
            Span::styled(
                format!("+{offset_s:>8.3} s  "),
                Style::new().fg(Color::DarkGray),
            ),
            Span::styled(
                format!("{:<18}", row.event.clone().unwrap_or_else(|| "-".into())),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("{:<28} ", row.path)),
            Span::styled(
                format!("{:>3} ", row.status.map_or("---".into(), |s| s.to_string())),
                theme::status_style(row.status),
            ),
            Span::raw(format!(
                "{:>9}  ",
                row.duration_ms.map_or(String::new(), theme::duration)
            )),
            pad(theme::verdict_mark(row.signature, false), 12),
            Span::styled(
                row.id.map_or(String::new(), |id| format!("#{id}")),
                Style::new().fg(Color::DarkGray),
            ),
            // A replay is the tool's doing, not Vobiz's: say so in the story.
            Span::styled(
                row.replay_of
                    .map_or(String::new(), |original| format!("  replay of #{original}")),
                Style::new().fg(Color::Yellow),
            ),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::styled(
            "Select a call and press Enter to see its timeline.",
            Style::new().fg(Color::DarkGray),
        ));
    }
    let title = match state
        .call_timeline
        .first()
        .and_then(|r| r.call_uuid.clone())
    {
        Some(uuid) => format!(" Call {uuid} "),
        None => " Timeline ".into(),
    };
    let timeline = Paragraph::new(lines).block(
        Block::bordered()
            .title(title)
            .border_style(theme::border(state.focus == Focus::Detail)),
    );
    frame.render_widget(
        super::bounded_scroll(timeline, timeline_area, state),
        timeline_area,
    );
}
