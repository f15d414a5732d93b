//! The exchange list: newest at the bottom, a window around the selection, one row each with
//! time, id, method, path, Event, status, duration, signature mark and flags.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Row, Table, TableState};
use ratatui::Frame;

use super::theme;
use crate::exchange::Flag;
use crate::output::clock_time;
use crate::store::ExchangeSummary;
use crate::tui::state::{AppState, Focus};

/// First row of the window: where it was (`top`), moved only as far as needed to keep
/// `selected` visible, and never past the newest rows.
pub fn window_start(len: usize, selected: usize, height: usize, top: usize) -> usize {
    if len <= height {
        return 0;
    }
    let top = top.min(len - height);
    if selected < top {
        selected
    } else if selected >= top + height {
        selected + 1 - height
    } else {
        top
    }
}

fn flags_text(row: &ExchangeSummary) -> String {
    let mut words: Vec<String> = Vec::new();
    if let Some(original) = row.replay_of {
        words.push(format!("↺#{original}"));
    }
    for flag in &row.flags {
        match flag {
            Flag::Replay => {}
            Flag::Slow => words.push("slow".into()),
            Flag::NonceReused => words.push("reused".into()),
            Flag::UpstreamError => words.push("upstream".into()),
            Flag::Rejected => words.push("rejected".into()),
            Flag::TooLarge => words.push("too-large".into()),
            Flag::ClientError => words.push("client".into()),
            Flag::Imported => words.push("imported".into()),
            Flag::Duplicate => words.push("dup".into()),
        }
    }
    words.join(" ")
}

/// Column widths for the list's width. Every layout keeps the flags (replay, reused, slow):
/// they are what the eye looks for. `None` for the path: it takes what is left.
struct Columns {
    widths: [u16; 9],
    short_mark: bool,
}

fn columns(width: u16) -> Columns {
    //                time id meth path event st dur sig flags
    let (widths, short_mark) = if width >= 130 {
        ([12, 7, 6, 0, 16, 3, 9, 11, 16], false)
    } else if width >= 100 {
        ([12, 6, 4, 0, 12, 3, 8, 11, 12], false)
    } else {
        ([12, 5, 4, 0, 9, 3, 8, 1, 9], true)
    };
    Columns { widths, short_mark }
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let layout = columns(area.width);
    let height = area.height.saturating_sub(3) as usize;
    let start = window_start(
        state.rows.len(),
        state.selected,
        height.max(1),
        state.list_top.get(),
    );
    state.list_top.set(start);
    let end = (start + height).min(state.rows.len());
    let rows = state.rows.range(start..end).map(|row| {
        let mark = theme::verdict_mark(row.signature, layout.short_mark);
        let marked = state.marked.is_some() && row.id == state.marked;
        let id = row.id.map_or("?".into(), |id| {
            format!("{}{id}", if marked { "*" } else { "#" })
        });
        Row::new(vec![
            Cell::from(clock_time(row.received_at_us, state.offset)),
            Cell::from(id),
            Cell::from(row.method.clone()),
            Cell::from(row.path.clone()),
            Cell::from(row.event.clone().unwrap_or_else(|| "-".into())),
            Cell::from(Span::styled(
                row.status.map_or("---".into(), |s| s.to_string()),
                theme::status_style(row.status),
            )),
            Cell::from(row.duration_ms.map_or(String::new(), theme::duration)),
            Cell::from(mark),
            Cell::from(Span::styled(
                flags_text(row),
                Style::new().fg(Color::Yellow),
            )),
        ])
    });
    let widths: Vec<Constraint> = layout
        .widths
        .iter()
        .map(|&w| {
            if w == 0 {
                Constraint::Min(8)
            } else {
                Constraint::Length(w)
            }
        })
        .collect();
    let sig = if layout.short_mark { "✓" } else { "sig" };
    let header = [
        "time", "id", "meth", "path", "event", "st", "duration", sig, "flags",
    ];
    let mut title = format!(" Exchanges ({}", state.rows.len());
    if state.has_older {
        title.push('+');
    }
    title.push(')');
    if state.loading {
        title.push_str(" loading…");
    }
    if !state.filter.is_empty() {
        title.push_str(&format!(" filter: {}", state.filter.text()));
    }
    title.push(' ');
    let focused = state.focus == Focus::List;
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(
            Block::bordered()
                .title(title)
                .border_style(theme::border(focused)),
        )
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .column_spacing(1);
    let mut table_state = TableState::default()
        .with_selected((!state.rows.is_empty()).then(|| state.selected.saturating_sub(start)));
    frame.render_stateful_widget(table, area, &mut table_state);
}

#[cfg(test)]
mod tests {
    use super::window_start;

    #[test]
    fn the_window_follows_the_newest_and_keeps_the_selection_visible() {
        assert_eq!(window_start(5, 4, 10, 0), 0);
        assert_eq!(window_start(100, 99, 10, 0), 90, "following the newest");
        assert_eq!(
            window_start(100, 98, 10, 90),
            90,
            "moving up inside the window keeps it"
        );
        assert_eq!(window_start(100, 50, 10, 90), 50, "up past the top");
        assert_eq!(window_start(100, 0, 10, 50), 0);
        // Moving down inside the window keeps it too: the cursor moves, not the page.
        assert_eq!(window_start(100, 1, 10, 0), 0);
        assert_eq!(window_start(100, 9, 10, 0), 0);
        assert_eq!(
            window_start(100, 10, 10, 0),
            1,
            "one past the bottom: one row"
        );
        assert_eq!(
            window_start(20, 5, 10, 90),
            5,
            "a window past the end comes back"
        );
    }
}

#[cfg(test)]
mod layout_tests {
    use super::columns;

    #[test]
    fn fixed_columns_leave_the_path_room_at_every_width() {
        for width in [80u16, 100, 105, 129, 130, 200] {
            let fixed: u16 = columns(width).widths.iter().sum::<u16>() + 8 + 2;
            assert!(fixed + 8 <= width, "{width}: {fixed}");
        }
    }
}
