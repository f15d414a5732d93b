//! Colours and marks. Every mark reads without colour too (✓ ✗ - ?), since terminals and
//! eyes differ.

use ratatui::style::{Color, Style};
use ratatui::text::Span;

use crate::signature::VerdictStatus;

pub fn verdict_mark(status: VerdictStatus, short: bool) -> Span<'static> {
    let (text, color) = match status {
        VerdictStatus::Valid => ("✓ valid", Color::Green),
        VerdictStatus::Invalid => ("✗ INVALID", Color::Red),
        VerdictStatus::Unsigned => ("- unsigned", Color::DarkGray),
        VerdictStatus::Unchecked => ("? unchecked", Color::Yellow),
    };
    let text = if short {
        &text[..text.char_indices().nth(1).map_or(text.len(), |(i, _)| i)]
    } else {
        text
    };
    Span::styled(text.to_string(), Style::new().fg(color))
}

pub fn status_style(status: Option<u16>) -> Style {
    Style::new().fg(match status {
        Some(200..=299) => Color::Green,
        Some(300..=399) => Color::Cyan,
        Some(400..=499) => Color::Yellow,
        Some(_) => Color::Red,
        None => Color::DarkGray,
    })
}

pub fn duration(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn border(focused: bool) -> Style {
    if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new().fg(Color::DarkGray)
    }
}

pub fn heading(text: &str) -> ratatui::text::Line<'static> {
    ratatui::text::Line::styled(format!("── {text} "), Style::new().fg(Color::Magenta))
}
