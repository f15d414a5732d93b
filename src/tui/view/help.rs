//! The `?` overlay: every key binding, from the same table the keymap documents.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, Clear, Row, Table};
use ratatui::Frame;

use crate::tui::action::BINDINGS;

pub fn render(frame: &mut Frame<'_>, area: Rect) {
    let height = (BINDINGS.len() as u16 + 2).min(area.height);
    let width = 78.min(area.width);
    let popup = super::centered(area, width, height);
    let rows = BINDINGS
        .iter()
        .map(|(keys, what)| Row::new(vec![keys.to_string(), what.to_string()]));
    let table = Table::new(rows, [Constraint::Length(18), Constraint::Min(20)])
        .style(Style::new().fg(Color::White))
        .block(Block::bordered().title(" Keys (? or Esc closes) "));
    frame.render_widget(Clear, popup);
    frame.render_widget(table, popup);
}
