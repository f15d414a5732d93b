//! The diff overlay: the marked and the selected exchange side by side.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Cell, Clear, Row, Table};
use ratatui::Frame;

use crate::tui::diff::diff_rows;
use crate::tui::state::AppState;

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let Some((left, right)) = &state.diff else {
        return;
    };
    let id = |e: &crate::exchange::Exchange| e.id.map_or("?".into(), |id| format!("#{id}"));
    // Both sides get the same width, so equal values are cut at the same place.
    let value_width = area.width.saturating_sub(2 + 1 + 8 + 28 + 4) / 2;
    let rows = diff_rows(left, right);
    // Inside the borders, below the header.
    let fits = area.height.saturating_sub(3) as usize;
    let max = u16::try_from(rows.len().saturating_sub(fits)).unwrap_or(u16::MAX);
    state.overlay_scroll_max.set(max);
    let rows: Vec<Row> = rows
        .into_iter()
        .skip(state.overlay_scroll.min(max) as usize)
        .take(fits) // a form may have thousands of fields
        .map(|row| {
            let style = if row.differs() {
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            let missing = || "∅".to_string();
            Row::new(vec![
                Cell::from(if row.differs() { "≠" } else { " " }),
                Cell::from(row.section),
                Cell::from(row.name.clone()),
                Cell::from(row.left.clone().unwrap_or_else(missing)),
                Cell::from(row.right.clone().unwrap_or_else(missing)),
            ])
            .style(style)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Length(8),
            Constraint::Length(28),
            Constraint::Length(value_width),
            Constraint::Length(value_width),
        ],
    )
    .header(
        Row::new(vec![
            String::new(),
            String::new(),
            "field".into(),
            format!("marked {}", id(left)),
            format!("selected {}", id(right)),
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(format!(
        " Diff {} ↔ {} (Esc closes) ",
        id(left),
        id(right)
    )));
    frame.render_widget(Clear, area);
    frame.render_widget(table, area);
}
