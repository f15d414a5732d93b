//! The health view: counts by status class and signature verdict, and per path the latency
//! percentiles, failures and slow answers — slowest first.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

use super::theme;
use crate::tui::state::AppState;

/// The paths table's columns after the path, most wanted first, with their widths. A pane
/// too narrow for all of them leaves out the last ones rather than cutting the percentiles.
const COLUMNS: [(&str, u16); 5] = [
    ("count", 7),
    ("p50", 8),
    ("p95", 8),
    ("failed", 6),
    ("slow", 5),
];
/// The path keeps at least this many columns; it takes whatever the others leave.
const PATH_MIN: u16 = 12;

/// How many of [`COLUMNS`] fit beside the path in a table `inner` columns wide (one column
/// of spacing between each).
fn columns_that_fit(inner: u16) -> usize {
    let mut used = PATH_MIN;
    COLUMNS
        .iter()
        .take_while(|(_, width)| {
            used += width + 1;
            used <= inner
        })
        .count()
}

/// `items` (a label, then "name count" pieces) on as few lines of `width` columns as they
/// fit, never splitting a piece, so that a number is never shown apart from its name. Word
/// wrapping would break "none 0" between the two.
fn packed(items: Vec<Span<'static>>, width: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut line: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for item in items {
        let cells = item.width();
        let trimmed = item.content.trim_end().width();
        if !line.is_empty() && used + trimmed > width {
            lines.push(Line::from(std::mem::take(&mut line)));
            used = 0;
        }
        used += cells;
        line.push(item);
    }
    if !line.is_empty() {
        lines.push(Line::from(line));
    }
    lines
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let health = &state.health;
    let classes = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];
    let mut by_status = vec![Span::styled("status   ", Style::new().fg(Color::Cyan))];
    for (index, class) in classes.iter().enumerate().skip(1).chain([(0, &"none")]) {
        let style = match index {
            2 => Style::new().fg(Color::Green),
            4 => Style::new().fg(Color::Yellow),
            5 | 0 => Style::new().fg(Color::Red),
            _ => Style::new(),
        };
        by_status.push(Span::styled(
            format!("{class} {}   ", health.by_class[index]),
            style,
        ));
    }
    let verdicts = ["valid", "invalid", "unsigned", "unchecked"];
    let mut by_verdict = vec![Span::styled("signature ", Style::new().fg(Color::Cyan))];
    for (index, name) in verdicts.iter().enumerate() {
        by_verdict.push(Span::raw(format!("{name} {}   ", health.by_verdict[index])));
    }
    // Packed into as many lines as the pane needs, so that every count shows, whole.
    let inner_width = usize::from(area.width.saturating_sub(2));
    let mut lines = packed(by_status, inner_width);
    lines.extend(packed(by_verdict, inner_width));
    let counts_height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let counts = Paragraph::new(lines)
        .block(Block::bordered().title(format!(" Health ({} exchanges seen) ", health.total())));
    let [counts_area, paths_area] =
        Layout::vertical([Constraint::Length(counts_height), Constraint::Min(0)]).areas(area);
    frame.render_widget(counts, counts_area);

    let seen: u64 = health.paths.values().map(|stats| stats.count).sum();
    let shown = columns_that_fit(paths_area.width.saturating_sub(2));
    let rows = health.slowest().into_iter().map(|(path, stats)| {
        let p = |q| stats.percentile(q).map_or("-".into(), theme::duration);
        let failures = Span::styled(
            stats.failures.to_string(),
            if stats.failures > 0 {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            },
        );
        let slow = Span::styled(
            stats.slow.to_string(),
            if stats.slow > 0 {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            },
        );
        let cells = [
            Cell::from(path.to_string()),
            Cell::from(stats.count.to_string()),
            Cell::from(p(50.0)),
            Cell::from(p(95.0)),
            Cell::from(failures),
            Cell::from(slow),
        ];
        Row::new(cells.into_iter().take(1 + shown))
    });
    let widths = std::iter::once(Constraint::Fill(1)).chain(
        COLUMNS[..shown]
            .iter()
            .map(|&(_, width)| Constraint::Length(width)),
    );
    let names = std::iter::once("path").chain(COLUMNS[..shown].iter().map(|&(name, _)| name));
    let table = Table::new(rows, widths)
        .header(Row::new(names).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::bordered().title(format!(
            // The counts above are the whole store's; these are of the rows read since start.
            " Paths of the latest {seen} exchanges, slowest first (failed: 4xx/5xx or no answer; \
         slow: > 3 s) "
        )));
    frame.render_widget(table, paths_area);
}
