//! Drawing: `render(frame, &state)` reads the state and draws one frame; it never changes
//! anything, so the same state always gives the same screen (the snapshot tests rely on it).

mod body;
mod calls;
mod detail;
mod diff;
mod health;
mod help;
mod list;
mod theme;

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::state::{AppState, Prompt, View};

pub use list::window_start;

/// Width from which the list and the detail sit side by side.
const SIDE_BY_SIDE_WIDTH: u16 = 150;

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
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area)
}

pub fn render(frame: &mut Frame<'_>, state: &AppState) {
    let [top, main, bottom] = main_layout(frame.area());
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
            list::render(frame, list_area, state);
            detail::render(frame, detail_area, state);
        }
        View::Calls => calls::render(frame, main, state),
        View::Health => health::render(frame, main, state),
    }
    if state.diff.is_some() {
        diff::render(frame, main, state);
    }
    if state.help {
        help::render(frame, main);
    }
    render_bottom(frame, bottom, state);
}

fn render_top(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let health = &state.health;
    let mut spans = vec![
        Span::styled(
            " vobiz-tunnel ",
            Style::new().add_modifier(Modifier::REVERSED),
        ),
        Span::raw(format!(
            " {} → {} ",
            state.status.listen_url, state.status.forward
        )),
        Span::raw(format!(" {} exchanges ", state.total)),
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
    ];
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
        (false, false) => Span::raw(""),
    };
    spans.push(mode);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_bottom(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    if let Some((prompt, text)) = &state.input {
        let label = match prompt {
            Prompt::Filter => "filter /",
            Prompt::ReplayTarget => "replay to URL:",
            Prompt::ExportPath => "export HAR to:",
        };
        let mut spans = vec![
            Span::styled(format!("{label} "), Style::new().fg(Color::Cyan)),
            Span::raw(text.clone()),
            Span::styled("█", Style::new().fg(Color::Cyan)),
        ];
        if let Some(message) = &state.message {
            spans.push(Span::styled(
                format!("   {message}"),
                Style::new().fg(Color::Red),
            ));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
        return;
    }
    let tokens = match (state.status.auth_tokens, state.status.main_auth_tokens) {
        (0, 0) => Span::styled(
            "no token: signatures unchecked",
            Style::new().fg(Color::Yellow),
        ),
        (a, m) => Span::raw(format!("tokens {a}+{m}")),
    };
    let mut spans = vec![
        Span::raw(format!(" store {}  ", state.status.store_path)),
        tokens,
        Span::styled("  ? keys", Style::new().fg(Color::DarkGray)),
    ];
    if let Some(message) = &state.message {
        spans = vec![Span::styled(
            format!(" {message}"),
            Style::new().fg(Color::Cyan),
        )];
    } else if let Some(error) = &state.last_error {
        spans.push(Span::styled(
            format!("  last error: {error}"),
            Style::new().fg(Color::Red),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
