//! Keys and mouse to [`Action`]s. The keymap depends only on the input mode (typing a filter
//! or a prompt, or navigating), so it is a pure function and the help screen is generated
//! from the same table.

use ratatui::crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

/// Everything the user can ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    /// Enter: focus the detail pane (or open the selected call in the call view).
    Enter,
    /// Esc: back to the list, close an overlay, or clear the filter.
    Back,
    NextTab,
    PrevTab,
    Tab(usize),
    /// `/`: start typing a filter.
    StartFilter,
    ReplayAsIs,
    ReplayResigned,
    EditReplay,
    EditReplayResigned,
    ReplayTo,
    Mark,
    Diff,
    CopyCurl,
    Export,
    ToggleFollow,
    TogglePause,
    ToggleRaw,
    /// Cycle exchanges → calls → health.
    NextView,
    Help,
    Quit,
    /// A character typed into the filter or prompt line.
    Input(char),
    InputBackspace,
    /// Ctrl-W in the filter or prompt line: delete the last word.
    InputDeleteWord,
    /// Ctrl-U in the filter or prompt line: clear it (prompts open pre-filled).
    InputClear,
    /// Enter in the filter or prompt line.
    Submit,
    Resize,
    /// The mouse wheel at a cell of the screen: it scrolls the pane under the pointer.
    Wheel {
        column: u16,
        row: u16,
        down: bool,
    },
    /// A left click at a cell: selects the list row or focuses the pane there.
    Click {
        column: u16,
        row: u16,
    },
}

/// What the keymap is reading into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputMode {
    Navigate,
    /// Typing the filter expression or a prompt answer.
    Text,
}

/// The documented bindings: key, what it does. Shown by `?` and in the README.
pub const BINDINGS: &[(&str, &str)] = &[
    (
        "j k ↑ ↓ PgUp PgDn",
        "move a row or a page (list, or scroll the detail)",
    ),
    (
        "g G  Home End",
        "first / last; G follows; also in the detail and call list",
    ),
    (
        "Enter",
        "focus the detail pane; in the call view, open the call",
    ),
    ("Esc", "back to the list, close, or clear the filter"),
    (
        "Tab S-Tab  1-4",
        "detail tab: request, response, signature, timing",
    ),
    (
        "/",
        "filter (event:Hangup status:5xx sig:invalid ... see README)",
    ),
    ("r", "replay as-is (same bytes, same nonce)"),
    ("R", "replay re-signed (fresh nonces and signatures)"),
    ("e  E", "edit in $EDITOR then replay (E: and re-sign)"),
    ("t", "replay to another URL"),
    ("m  d", "mark an exchange; diff the selected one with it"),
    ("c", "copy as curl (clipboard via OSC 52, and shown)"),
    ("x", "export the filtered exchanges to a HAR file"),
    ("f", "follow new arrivals on/off"),
    ("p", "pause the view (arrivals are still recorded)"),
    ("b", "raw body bytes on/off"),
    ("v", "view: exchanges → calls → health"),
    (
        "Ctrl-U  Ctrl-W",
        "in the filter or a prompt: clear it, delete a word",
    ),
    (
        "Ctrl-D  Ctrl-U",
        "(outside a prompt) a page down / up, like PgDn PgUp",
    ),
    (
        "mouse",
        "wheel scrolls the pane under it; a click selects a row",
    ),
    (
        "(an overlay)",
        "move keys scroll it; Esc closes; other keys do nothing",
    ),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
];

/// Maps a terminal event to an action.
pub fn map_event(event: &Event, mode: InputMode) -> Option<Action> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => map_key(key, mode),
        Event::Mouse(mouse) => map_mouse(mouse),
        Event::Resize(..) => Some(Action::Resize),
        _ => None,
    }
}

fn map_mouse(mouse: &MouseEvent) -> Option<Action> {
    let (column, row) = (mouse.column, mouse.row);
    match mouse.kind {
        MouseEventKind::ScrollUp => Some(Action::Wheel {
            column,
            row,
            down: false,
        }),
        MouseEventKind::ScrollDown => Some(Action::Wheel {
            column,
            row,
            down: true,
        }),
        MouseEventKind::Down(MouseButton::Left) => Some(Action::Click { column, row }),
        _ => None,
    }
}

fn map_key(key: &KeyEvent, mode: InputMode) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Quit),
            // In a text line, the shell's editing keys rather than paging.
            KeyCode::Char('u') if mode == InputMode::Text => Some(Action::InputClear),
            KeyCode::Char('w') if mode == InputMode::Text => Some(Action::InputDeleteWord),
            KeyCode::Char('u') => Some(Action::PageUp),
            KeyCode::Char('d') => Some(Action::PageDown),
            _ => None,
        };
    }
    if mode == InputMode::Text {
        return match key.code {
            KeyCode::Char(c) => Some(Action::Input(c)),
            KeyCode::Backspace => Some(Action::InputBackspace),
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Esc => Some(Action::Back),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown | KeyCode::Char(' ') => Action::PageDown,
        KeyCode::Char('g') | KeyCode::Home => Action::First,
        KeyCode::Char('G') | KeyCode::End => Action::Last,
        KeyCode::Enter => Action::Enter,
        KeyCode::Esc => Action::Back,
        KeyCode::Tab => Action::NextTab,
        KeyCode::BackTab => Action::PrevTab,
        KeyCode::Char(c @ '1'..='4') => Action::Tab(c as usize - '1' as usize),
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('r') => Action::ReplayAsIs,
        KeyCode::Char('R') => Action::ReplayResigned,
        KeyCode::Char('e') => Action::EditReplay,
        KeyCode::Char('E') => Action::EditReplayResigned,
        KeyCode::Char('t') => Action::ReplayTo,
        KeyCode::Char('m') => Action::Mark,
        KeyCode::Char('d') => Action::Diff,
        KeyCode::Char('c') => Action::CopyCurl,
        KeyCode::Char('x') => Action::Export,
        KeyCode::Char('f') => Action::ToggleFollow,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('b') => Action::ToggleRaw,
        KeyCode::Char('v') => Action::NextView,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('q') => Action::Quit,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEventState;

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn vim_keys_and_arrows_move() {
        let nav = InputMode::Navigate;
        assert_eq!(map_event(&key(KeyCode::Char('j')), nav), Some(Action::Down));
        assert_eq!(map_event(&key(KeyCode::Down), nav), Some(Action::Down));
        assert_eq!(map_event(&key(KeyCode::Char('k')), nav), Some(Action::Up));
        assert_eq!(map_event(&key(KeyCode::Up), nav), Some(Action::Up));
        assert_eq!(map_event(&key(KeyCode::Char('G')), nav), Some(Action::Last));
        assert_eq!(
            map_event(&key(KeyCode::Char('3')), nav),
            Some(Action::Tab(2))
        );
    }

    #[test]
    fn typing_a_filter_takes_every_letter() {
        let text = InputMode::Text;
        assert_eq!(
            map_event(&key(KeyCode::Char('q')), text),
            Some(Action::Input('q'))
        );
        assert_eq!(
            map_event(&key(KeyCode::Char('r')), text),
            Some(Action::Input('r'))
        );
        assert_eq!(map_event(&key(KeyCode::Enter), text), Some(Action::Submit));
        assert_eq!(map_event(&key(KeyCode::Esc), text), Some(Action::Back));
    }

    #[test]
    fn ctrl_u_and_ctrl_w_edit_a_text_line_and_page_elsewhere() {
        let ctrl = |c| Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
        let text = InputMode::Text;
        assert_eq!(map_event(&ctrl('u'), text), Some(Action::InputClear));
        assert_eq!(map_event(&ctrl('w'), text), Some(Action::InputDeleteWord));
        let navigate = InputMode::Navigate;
        assert_eq!(map_event(&ctrl('u'), navigate), Some(Action::PageUp));
        assert_eq!(map_event(&ctrl('d'), navigate), Some(Action::PageDown));
    }

    #[test]
    fn ctrl_c_quits_in_every_mode_and_releases_are_ignored() {
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(map_event(&ctrl_c, InputMode::Text), Some(Action::Quit));
        assert_eq!(map_event(&ctrl_c, InputMode::Navigate), Some(Action::Quit));
        let release = Event::Key(KeyEvent {
            code: KeyCode::Char('q'),
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
        });
        assert_eq!(map_event(&release, InputMode::Navigate), None);
    }

    #[test]
    fn every_replay_key_is_bound() {
        let nav = InputMode::Navigate;
        for (c, action) in [
            ('r', Action::ReplayAsIs),
            ('R', Action::ReplayResigned),
            ('e', Action::EditReplay),
            ('t', Action::ReplayTo),
            ('m', Action::Mark),
            ('d', Action::Diff),
            ('c', Action::CopyCurl),
            ('x', Action::Export),
            ('f', Action::ToggleFollow),
            ('p', Action::TogglePause),
            ('q', Action::Quit),
            ('?', Action::Help),
        ] {
            assert_eq!(map_event(&key(KeyCode::Char(c)), nav), Some(action), "{c}");
        }
    }
}
