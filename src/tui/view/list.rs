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
    // What the Vobiz checks found, as the log line's `⚠ N` (`finding:` filters by rule).
    let warnings = crate::checks::warning_count(&row.findings);
    if warnings > 0 {
        words.push(format!("⚠{warnings}"));
    }
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
            Flag::SenderGone => words.push("gone".into()),
            Flag::Interrupted => words.push("interrupted".into()),
        }
    }
    words.join(" ")
}

/// The list's columns, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Time,
    Id,
    Method,
    Path,
    Event,
    Status,
    Duration,
    Signature,
    Flags,
}

/// The columns shown at the list's width, each with its width (`0` for the path: it takes
/// what is left). Every layout keeps the status and the duration whole (a cut `20` or `2.5`
/// misleads), the id (a cut `#2949` names another exchange than #29498) and the flags
/// (replay, reused, slow: what the eye looks for); narrower terminals drop whole columns
/// instead, the method first (nearly always POST), then milliseconds, the event and the time.
struct Columns {
    shown: Vec<(Column, u16)>,
    short_mark: bool,
    /// The time as `HH:MM:SS`, without milliseconds.
    short_time: bool,
}

/// The path never gets less than this: cut further, it says nothing.
const MIN_PATH: u16 = 6;
/// What the event keeps when a long id takes its room.
const MIN_EVENT: u16 = 5;

/// What the path keeps when the flags take room from it.
const PATH_KEPT: u16 = 12;

/// `id_width`: what the widest id loaded takes, `#` included; `flags_width`: what the widest
/// flags in view take.
fn columns(width: u16, id_width: u16, flags_width: u16) -> Columns {
    use Column::*;
    let (mut shown, short_mark, short_time) = if width >= 130 {
        (
            vec![
                (Time, 12),
                (Id, 7),
                (Method, 6),
                (Path, 0),
                (Event, 16),
                (Status, 3),
                (Duration, 9),
                (Signature, 11),
                (Flags, 16),
            ],
            false,
            false,
        )
    } else if width >= 100 {
        (
            vec![
                (Time, 12),
                (Id, 6),
                (Method, 4),
                (Path, 0),
                (Event, 12),
                (Status, 3),
                (Duration, 8),
                (Signature, 11),
                (Flags, 12),
            ],
            false,
            false,
        )
    } else if width >= 78 {
        (
            vec![
                (Time, 12),
                (Id, 5),
                (Method, 4),
                (Path, 0),
                (Event, 9),
                (Status, 3),
                (Duration, 8),
                (Signature, 1),
                (Flags, 9),
            ],
            true,
            false,
        )
    } else if width >= 56 {
        (
            vec![
                (Time, 8),
                (Id, 5),
                (Path, 0),
                (Event, 9),
                (Status, 3),
                (Duration, 8),
                (Signature, 1),
                (Flags, 6),
            ],
            true,
            true,
        )
    } else {
        (
            vec![
                (Id, 5),
                (Path, 0),
                (Status, 3),
                (Duration, 8),
                (Signature, 1),
                (Flags, 6),
            ],
            true,
            true,
        )
    };
    widen_the_id(&mut shown, width, id_width);
    widen_the_flags(&mut shown, width, flags_width);
    Columns {
        shown,
        short_mark,
        short_time,
    }
}

/// Makes the id column `id_width` wide when the layout's is narrower. The room comes from the
/// path, and once the path is down to [`MIN_PATH`], from the event.
fn widen_the_id(shown: &mut [(Column, u16)], width: u16, id_width: u16) {
    for (column, w) in shown.iter_mut() {
        if *column == Column::Id {
            *w = (*w).max(id_width);
        }
    }
    // Each column's width, a space between two columns, and the borders.
    let fixed: u16 = shown.iter().map(|(_, w)| w).sum::<u16>() + shown.len() as u16 - 1 + 2;
    let missing = (fixed + MIN_PATH).saturating_sub(width);
    for (column, w) in shown.iter_mut() {
        if *column == Column::Event {
            *w = w.saturating_sub(missing).max(MIN_EVENT);
        }
    }
}

/// Makes the flags column as wide as the widest flags in view (a replay that failed reads
/// `↺#16 reused upstream`: cut, the flag that matters is the one lost), with room from the
/// path down to [`PATH_KEPT`].
fn widen_the_flags(shown: &mut [(Column, u16)], width: u16, flags_width: u16) {
    let fixed: u16 = shown.iter().map(|(_, w)| w).sum::<u16>() + shown.len() as u16 - 1 + 2;
    let path_room = width.saturating_sub(fixed);
    let spare = path_room.saturating_sub(PATH_KEPT);
    for (column, w) in shown.iter_mut() {
        if *column == Column::Flags && flags_width > *w {
            *w += (flags_width - *w).min(spare);
        }
    }
}

/// Characters the flags of the rows in view take, at most.
fn flags_width<'a>(rows: impl Iterator<Item = &'a ExchangeSummary>) -> u16 {
    rows.map(|row| unicode_width::UnicodeWidthStr::width(flags_text(row).as_str()))
        .max()
        .map_or(0, |w| u16::try_from(w).unwrap_or(u16::MAX))
}

/// Characters the id column needs for the widest id loaded (`#` or the mark's `*`, then
/// the digits). Ids are ascending, so the newest loaded is the widest.
fn id_width(state: &AppState) -> u16 {
    let newest = state.rows.iter().rev().find_map(|r| r.id).unwrap_or(0);
    1 + newest.to_string().len() as u16
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let height = area.height.saturating_sub(3) as usize;
    let start = window_start(
        state.rows.len(),
        state.selected,
        height.max(1),
        state.list_top.get(),
    );
    state.list_top.set(start);
    let end = (start + height).min(state.rows.len());
    let in_view = flags_width(state.rows.range(start..end));
    let layout = columns(area.width, id_width(state), in_view);
    let rows = state.rows.range(start..end).map(|row| {
        let cells = layout.shown.iter().map(|(column, _)| match column {
            Column::Time => {
                let time = clock_time(row.received_at_us, state.offset);
                match layout.short_time {
                    true => Cell::from(time.get(..8).unwrap_or(&time).to_string()),
                    false => Cell::from(time),
                }
            }
            Column::Id => {
                let marked = state.marked.is_some() && row.id == state.marked;
                Cell::from(row.id.map_or("?".into(), |id| {
                    format!("{}{id}", if marked { "*" } else { "#" })
                }))
            }
            Column::Method => Cell::from(row.method.clone()),
            Column::Path => Cell::from(row.path.clone()),
            Column::Event => Cell::from(row.event.clone().unwrap_or_else(|| "-".into())),
            Column::Status => Cell::from(Span::styled(
                row.status.map_or("---".into(), |s| s.to_string()),
                theme::status_style(row.status),
            )),
            Column::Duration => Cell::from(row.duration_ms.map_or(String::new(), theme::duration)),
            Column::Signature => Cell::from(theme::verdict_mark(row.signature, layout.short_mark)),
            Column::Flags => Cell::from(Span::styled(
                flags_text(row),
                Style::new().fg(Color::Yellow),
            )),
        });
        Row::new(cells.collect::<Vec<_>>())
    });
    let widths: Vec<Constraint> = layout
        .shown
        .iter()
        .map(|&(column, w)| match column {
            Column::Path => Constraint::Min(MIN_PATH),
            _ => Constraint::Length(w),
        })
        .collect();
    let header = layout.shown.iter().map(|(column, _)| match column {
        Column::Time => "time",
        Column::Id => "id",
        Column::Method => "meth",
        Column::Path => "path",
        Column::Event => "event",
        Column::Status => "st",
        Column::Duration => "duration",
        Column::Signature if layout.short_mark => "✓",
        Column::Signature => "sig",
        Column::Flags => "flags",
    });
    // Unfiltered, the store's count; filtered, what is loaded (counting the matches of a
    // large store would mean a scan).
    let mut title = if state.filter.is_empty() {
        format!(" Exchanges ({}", state.total.max(state.rows.len() as u64))
    } else {
        let mut loaded = state.rows.len().to_string();
        if state.has_older || state.has_newer {
            loaded.push('+');
        }
        format!(" Exchanges ({loaded}")
    };
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
        .header(
            Row::new(header.collect::<Vec<_>>()).style(Style::new().add_modifier(Modifier::BOLD)),
        )
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
mod flag_tests {
    use super::flags_text;
    use crate::checks::{Finding, Severity};

    /// The checks' warnings show first, as the log line's `⚠ N`; an info does not count.
    #[test]
    fn findings_show_as_a_warning_count() {
        let mut row = crate::tui::state::tests::summary(1, "Hangup");
        row.findings = vec![
            Finding::new("xml-root", Severity::Error, "x"),
            Finding::new("slow-answer", Severity::Warning, "y"),
            Finding::new("z", Severity::Info, "z"),
        ];
        row.flags = vec![crate::exchange::Flag::Slow];
        assert_eq!(flags_text(&row), "⚠2 slow");
        row.findings.clear();
        assert_eq!(flags_text(&row), "slow");
    }
}

#[cfg(test)]
mod layout_tests {
    use super::{columns, Column, MIN_PATH, PATH_KEPT};

    #[test]
    fn fixed_columns_leave_the_path_room_at_every_width() {
        for width in [40u16, 56, 60, 77, 78, 80, 100, 105, 129, 130, 200] {
            let layout = columns(width, 2, 0);
            let fixed: u16 =
                layout.shown.iter().map(|(_, w)| w).sum::<u16>() + layout.shown.len() as u16 - 1
                    + 2;
            assert!(fixed + 6 <= width, "{width}: {fixed}");
        }
    }

    /// Flags as long as a failed replay's (`↺#16 reused upstream`) are whole where the path
    /// can spare the room, and the path keeps its own.
    #[test]
    fn the_flags_column_holds_the_widest_flags_in_view() {
        for width in [56u16, 78, 80, 100, 129, 130, 160, 200] {
            let layout = columns(width, 4, 20);
            let flags = layout
                .shown
                .iter()
                .find(|(c, _)| *c == Column::Flags)
                .unwrap();
            let fixed: u16 =
                layout.shown.iter().map(|(_, w)| w).sum::<u16>() + layout.shown.len() as u16 - 1
                    + 2;
            assert!(fixed + MIN_PATH <= width, "{width}: {fixed}");
            if width >= 100 {
                assert!(flags.1 >= 20, "{width}: flags {}", flags.1);
                assert!(
                    width - fixed >= PATH_KEPT,
                    "{width}: the path keeps its room"
                );
            }
        }
    }

    /// Ids up to a hundred million (`#99999999`) are whole at every width, and the path keeps
    /// its room.
    #[test]
    fn the_id_column_holds_the_widest_id_loaded() {
        for width in [40u16, 56, 60, 77, 78, 80, 99, 100, 105, 129, 130, 200] {
            for id_width in 2..=9 {
                let layout = columns(width, id_width, 0);
                let id = layout.shown.iter().find(|(c, _)| *c == Column::Id).unwrap();
                assert!(id.1 >= id_width, "{width}: id {id_width} in {}", id.1);
                let fixed: u16 = layout.shown.iter().map(|(_, w)| w).sum::<u16>()
                    + layout.shown.len() as u16
                    - 1
                    + 2;
                assert!(fixed + MIN_PATH <= width, "{width}, id {id_width}: {fixed}");
            }
        }
    }
}
