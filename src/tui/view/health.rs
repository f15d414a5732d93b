//! The health view: counts by status class and signature verdict, and per path the latency
//! percentiles, failures and slow answers — slowest first.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

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
    // Wrapped in a narrow pane, so that every count shows.
    let counts = Paragraph::new(vec![Line::from(by_status), Line::from(by_verdict)])
        .wrap(Wrap { trim: true })
        .block(Block::bordered().title(format!(" Health ({} exchanges seen) ", health.total())));
    let counts_height = counts.line_count(area.width).min(u16::MAX as usize) as u16;
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
