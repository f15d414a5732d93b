//! Drawing: `render(frame, &state)` reads the state and draws one frame; it never changes
//! anything, so the same state always gives the same screen (the snapshot tests rely on it).

mod body;
pub use body::SHOWN_BODY_BYTES;
mod calls;
pub use calls::CALLS_LISTED;
mod detail;
mod diff;
mod health;
mod help;
mod list;
mod popup;
mod theme;

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::state::{AppState, LastError, PaneAreas, Prompt, View};

pub use list::window_start;

/// Width from which the list and the detail sit side by side.
const SIDE_BY_SIDE_WIDTH: u16 = 160;

/// The list's visible rows for a terminal of `area` (the loop tells the state, for paging).
pub fn list_height(area: Rect) -> usize {
    let [_, main, _] = main_layout(area);
    let list = if main.width >= SIDE_BY_SIDE_WIDTH {
        main.height
    } else {
        main.height / 2
    };
    list.saturating_sub(3) as usize
}

fn main_layout(area: Rect) -> [Rect; 3] {
    main_layout_with(area, 1)
}

fn main_layout_with(area: Rect, bottom: u16) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(bottom),
    ])
    .areas(area)
}

pub fn render(frame: &mut Frame<'_>, state: &AppState) {
    let area = frame.area();
    let [top, main, bottom] = main_layout_with(area, bottom_height(state, area.width));
    render_top(frame, top, state);
    match state.view {
        View::Exchanges => {
            let direction = if main.width >= SIDE_BY_SIDE_WIDTH {
                Direction::Horizontal
            } else {
                Direction::Vertical
            };
            let [list_area, detail_area] = Layout::default()
                .direction(direction)
                .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(main);
            state.pane_areas.set(PaneAreas {
                list: list_area,
                detail: detail_area,
            });
            list::render(frame, list_area, state);
            detail::render(frame, detail_area, state);
        }
        View::Calls => {
            state.pane_areas.take();
            calls::render(frame, main, state)
        }
        View::Health => {
            state.pane_areas.take();
            health::render(frame, main, state)
        }
    }
    if state.diff.is_some() {
        diff::render(frame, main, state);
    }
    if let Some(popup) = &state.popup {
        popup::render(frame, main, popup, state);
    }
    if state.help {
        help::render(frame, main, state);
    }
    render_bottom(frame, bottom, state);
}

fn render_top(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let health = &state.health;
    // The mode comes first: it must survive an 80-column terminal.
    let mode = match (state.paused, state.follow) {
        (true, _) => Span::styled(
            format!(" PAUSED ({} held) ", state.held.len()),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ),
        (false, true) => Span::styled(" FOLLOW ", Style::new().fg(Color::Green)),
        (false, false) if state.unseen > 0 => Span::styled(
            format!(" {} new ↓ (G) ", state.unseen),
            Style::new().fg(Color::Black).bg(Color::Cyan),
        ),
        (false, false) => Span::raw(" "),
    };
    let spans = vec![
        Span::styled(
            " vobiz-tunnel ",
            Style::new().add_modifier(Modifier::REVERSED),
        ),
        mode,
        Span::raw(format!(" {} stored ", state.total)),
        Span::styled(
            format!("✓{} ", health.by_verdict[0]),
            Style::new().fg(Color::Green),
        ),
        Span::styled(
            format!("✗{} ", health.by_verdict[1]),
            Style::new().fg(Color::Red),
        ),
        Span::styled(
            format!("-{} ", health.by_verdict[2]),
            Style::new().fg(Color::DarkGray),
        ),
        Span::styled(
            format!("?{} ", health.by_verdict[3]),
            Style::new().fg(Color::Yellow),
        ),
        relay_span(state),
        Span::raw(format!(
            " {} → {}",
            state.status.listen_url, state.status.forward
        )),
    ];
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The tunnel's state, when there is one: the public URL while connected, else a warning.
fn relay_span(state: &AppState) -> Span<'static> {
    use crate::relay::RelayState;
    match &state.relay {
        None => Span::raw(""),
        Some(RelayState::Connected { public_url, .. }) => {
            Span::styled(format!(" ⇄ {public_url} "), Style::new().fg(Color::Green))
        }
        Some(RelayState::Connecting { .. }) => {
            Span::styled(" relay: connecting ", Style::new().fg(Color::Yellow))
        }
        Some(RelayState::Reconnecting { retry_in_secs, .. }) => Span::styled(
            format!(" relay down, retry in {retry_in_secs:.0} s "),
            Style::new().fg(Color::Black).bg(Color::Red),
        ),
        Some(RelayState::Refused { .. }) => Span::styled(
            " relay REFUSED the token ",
            Style::new().fg(Color::Black).bg(Color::Red),
        ),
        Some(RelayState::Replaced { .. }) => Span::styled(
            " relay: another laptop took the tunnel ",
            Style::new().fg(Color::Black).bg(Color::Red),
        ),
    }
}

/// Lines a message may take in the bottom bar.
const MESSAGE_LINES: usize = 3;

/// Height of the bottom bar: a message is shown whole, on up to [`MESSAGE_LINES`] lines (a
/// filter error's hint comes at its end); under a prompt, on lines of its own.
fn bottom_height(state: &AppState, width: u16) -> u16 {
    // Measured as drawn: wrapped at spaces, which may take a line more than its width says.
    let lines = |text: String| {
        let paragraph = Paragraph::new(Line::raw(text)).wrap(Wrap { trim: false });
        paragraph.line_count(width).clamp(1, MESSAGE_LINES) as u16
    };
    match (&state.input, &state.message) {
        (Some(_), Some(message)) => 1 + lines(message.clone()),
        // As the status line shows a message of its own.
        (None, Some(message)) => lines(format!(" {message}")),
        (_, None) => 1,
    }
}

/// The end of `text` that fits in `room` columns, after a `…` when the start is left out.
fn tail_within(text: &str, room: usize) -> String {
    if text.width() <= room {
        return text.to_owned();
    }
    let mut width = 1; // the `…`
    let start = text
        .char_indices()
        .rev()
        .take_while(|(_, c)| {
            width += c.width().unwrap_or(0);
            width <= room
        })
        .last()
        .map_or(text.len(), |(i, _)| i);
    format!("…{}", &text[start..])
}

fn render_bottom(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    if let Some((Prompt::ConfirmOverwrite, path)) = &state.input {
        let line = Line::from(vec![
            Span::styled(
                format!("{path} exists: overwrite it? "),
                Style::new().fg(Color::Yellow),
            ),
            Span::styled("y", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" replaces it, any other key keeps it"),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    if let Some((prompt, text)) = &state.input {
        let label = match prompt {
            Prompt::Filter => "filter /",
            Prompt::ReplayTarget => "replay to URL:",
            Prompt::ExportPath => "export HAR to:",
            Prompt::ConfirmOverwrite => "",
        };
        let label = format!("{label} ");
        // The end is where one types: what does not fit goes at the start.
        let room = usize::from(area.width).saturating_sub(label.width() + 1);
        let mut lines = vec![Line::from(vec![
            Span::styled(label, Style::new().fg(Color::Cyan)),
            Span::raw(tail_within(text, room)),
            Span::styled("█", Style::new().fg(Color::Cyan)),
        ])];
        if let Some(message) = &state.message {
            lines.push(Line::styled(message.clone(), Style::new().fg(Color::Red)));
        }
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
        return;
    }
    if let Some(message) = state.message.as_ref().filter(|_| area.height > 1) {
        // A message longer than the line: it alone, whole (the rest is always the same).
        let line = Line::styled(format!(" {message}"), Style::new().fg(Color::Cyan));
        frame.render_widget(Paragraph::new(line).wrap(Wrap { trim: false }), area);
        return;
    }
    // What needs attention comes first; the store path is last, as it is long and fixed.
    let mut spans = Vec::new();
    if let Some(message) = &state.message {
        spans.push(Span::styled(
            format!(" {message} "),
            Style::new().fg(Color::Cyan),
        ));
    } else if let Some(error) = &state.last_error {
        // Red while nothing went right since; yellow once callbacks are answered again.
        let colour = if error.answered_since == 0 {
            Color::Red
        } else {
            Color::Yellow
        };
        spans.push(Span::styled(
            format!(" last error{}: {} ", since(error), error.text),
            Style::new().fg(colour),
        ));
    }
    if state.status.auth_tokens + state.status.main_auth_tokens == 0 {
        spans.push(Span::styled(
            " no token: signatures unchecked ",
            Style::new().fg(Color::Yellow),
        ));
    } else {
        spans.push(Span::raw(format!(
            " tokens {}+{} ",
            state.status.auth_tokens, state.status.main_auth_tokens
        )));
    }
    spans.push(Span::styled(" ? keys ", Style::new().fg(Color::DarkGray)));
    spans.push(Span::raw(format!(" store {}", state.status.store_path)));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// How old the last error is and what went well since, e.g. ` (4 min ago, 120 answered
/// since)`; empty for an error of this minute with nothing after it.
fn since(error: &LastError) -> String {
    let minutes = error.at.elapsed().as_secs() / 60;
    let mut parts = Vec::with_capacity(2);
    match minutes {
        0 => {}
        1..=119 => parts.push(format!("{minutes} min ago")),
        _ => parts.push(format!("{} h ago", minutes / 60)),
    }
    if error.answered_since > 0 {
        parts.push(format!("{} answered since", error.answered_since));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `paragraph` scrolled as far as the detail pane's scroll says, but never past its end in
/// `area`; how far that end is goes back to the state, which bounds the keys by it (`G`,
/// scrolling down). Shared by the exchange detail and the call timeline.
fn bounded_scroll<'a>(paragraph: Paragraph<'a>, area: Rect, state: &AppState) -> Paragraph<'a> {
    let beyond = paragraph
        .line_count(area.width)
        .saturating_sub(area.height as usize);
    let max = u16::try_from(beyond).unwrap_or(u16::MAX);
    state.detail_scroll_max.set(max);
    paragraph.scroll((state.detail_scroll.min(max), 0))
}

/// A `width` × `height` rectangle in the middle of `area`, for a box drawn over the view.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [_, vertical, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, boxed, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width),
        Constraint::Fill(1),
    ])
    .areas(vertical);
    boxed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_too_long_for_its_line_shows_its_end() {
        assert_eq!(tail_within("hangup", 10), "hangup");
        assert_eq!(tail_within("event:Hangup status:5xx", 10), "…tatus:5xx");
        assert_eq!(tail_within("event:Hangup status:5xx", 10).width(), 10);
        // Wide characters count for two columns.
        assert_eq!(tail_within("call:日本語テキスト", 7), "…キスト");
        assert_eq!(tail_within("abc", 0), "…");
    }
}
