//! The health view: counts by status class and signature verdict, and per path the latency
//! percentiles, failures and slow answers — slowest first.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::theme;
use crate::tui::state::AppState;

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState) {
    let health = &state.health;
    let [counts_area, paths_area] =
        Layout::vertical([Constraint::Length(4), Constraint::Min(0)]).areas(area);
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
    let counts = Paragraph::new(vec![Line::from(by_status), Line::from(by_verdict)])
        .block(Block::bordered().title(format!(" Health ({} exchanges seen) ", health.total())));
    frame.render_widget(counts, counts_area);

    let seen: u64 = health.paths.values().map(|stats| stats.count).sum();
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
        Row::new(vec![
            Cell::from(path.to_string()),
            Cell::from(stats.count.to_string()),
            Cell::from(p(50.0)),
            Cell::from(p(95.0)),
            Cell::from(failures),
            Cell::from(slow),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(20),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new(["path", "count", "p50", "p95", "failed", "slow"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(format!(
        // The counts above are the whole store's; these are of the rows read since start.
        " Paths of the latest {seen} exchanges, slowest first (failed: 4xx/5xx or no answer; \
         slow: > 3 s) "
    )));
    frame.render_widget(table, paths_area);
}
