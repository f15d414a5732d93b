//! A text too long for the status line (the `c` curl command), wrapped in a box over the
//! view so that the whole of it can be read, and selected where the clipboard escape is not
//! supported.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::state::{AppState, Popup};

pub fn render(frame: &mut Frame<'_>, area: Rect, popup: &Popup, state: &AppState) {
    let width = area.width.saturating_sub(4).clamp(1, 110);
    let inner_width = width.saturating_sub(2).max(1);
    let text = Paragraph::new(popup.text.as_str())
        .wrap(Wrap { trim: false })
        .style(Style::new().fg(Color::White));
    // Lines as wrapped (at spaces, so counting characters fell short and cut the end off).
    let lines = match state.popup_lines.get() {
        Some((measured_at, lines)) if measured_at == inner_width => lines,
        _ => {
            let lines = text.line_count(inner_width);
            state.popup_lines.set(Some((inner_width, lines)));
            lines
        }
    };
    let height = u16::try_from(lines + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let fits = height.saturating_sub(2) as usize;
    let max = u16::try_from(lines.saturating_sub(fits)).unwrap_or(u16::MAX);
    state.overlay_scroll_max.set(max);
    let scroll = state.overlay_scroll.min(max);
    let title = if max > 0 {
        format!(
            " {} — lines {}-{} of {lines}, ↑↓ scroll, Esc closes ",
            popup.title,
            scroll as usize + 1,
            scroll as usize + fits
        )
    } else {
        format!(" {} — Esc closes ", popup.title)
    };
    let boxed = super::centered(area, width, height);
    let text = text
        .scroll((scroll, 0))
        .block(Block::bordered().title(title));
    frame.render_widget(Clear, boxed);
    frame.render_widget(text, boxed);
}
