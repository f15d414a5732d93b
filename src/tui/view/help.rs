//! The `?` overlay: every key binding, from the same table the keymap documents.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, Clear, Row, Table};
use ratatui::Frame;

use crate::tui::action::BINDINGS;
use crate::tui::state::AppState;

/// Wide enough for the longest description; narrower terminals cut it.
const WIDTH: u16 = 84;

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let height = (BINDINGS.len() as u16 + 2).min(area.height);
    let width = WIDTH.min(area.width);
    let popup = super::centered(area, width, height);
    // A terminal too short for every binding scrolls them with ↑/↓ (bounded here).
    let hidden = BINDINGS
        .len()
        .saturating_sub(height.saturating_sub(2) as usize);
    let first = usize::from(state.help_scroll.get()).min(hidden);
    state.help_scroll.set(first as u16);
    let rows = BINDINGS
        .iter()
        .skip(first)
        .map(|(keys, what)| Row::new(vec![keys.to_string(), what.to_string()]));
    let title = if hidden > 0 {
        format!(
            " Keys ({}/{}, ↑↓ scroll, ? or Esc closes) ",
            first + 1,
            hidden + 1
        )
    } else {
        " Keys (? or Esc closes) ".to_string()
    };
    let table = Table::new(rows, [Constraint::Length(18), Constraint::Min(20)])
        .style(Style::new().fg(Color::White))
        .block(Block::bordered().title(title));
    frame.render_widget(Clear, popup);
    frame.render_widget(table, popup);
}
