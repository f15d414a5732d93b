//! A text too long for the status line (the `c` curl command), wrapped in a box over the
//! view so that the whole of it can be read, and selected where the clipboard escape is not
//! supported.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::state::Popup;

pub fn render(frame: &mut Frame<'_>, area: Rect, popup: &Popup) {
    let width = area.width.saturating_sub(4).clamp(1, 110);
    let inner_width = width.saturating_sub(2).max(1) as usize;
    // Lines once wrapped (an estimate by characters; the paragraph wraps at spaces).
    let lines: usize = popup
        .text
        .lines()
        .map(|line| line.chars().count().div_ceil(inner_width).max(1))
        .sum();
    let height = (lines as u16 + 3).min(area.height);
    let boxed = super::centered(area, width, height);
    let text = Paragraph::new(popup.text.as_str())
        .wrap(Wrap { trim: false })
        .style(Style::new().fg(Color::White))
        .block(Block::bordered().title(format!(" {} — Esc closes ", popup.title)));
    frame.render_widget(Clear, boxed);
    frame.render_widget(text, boxed);
}
