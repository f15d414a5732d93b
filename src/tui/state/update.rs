//! What each user action does to the inspector's state, and the work it asks of the loop.

use super::{AppState, Command, Focus, Prompt, View, TABS};
use crate::filter::Filter;
use crate::tui::action::Action;

/// Keys that replay, edit, mark, diff or copy the selected exchange.
fn acts_on_the_selected_exchange(action: &Action) -> bool {
    matches!(
        action,
        Action::ReplayAsIs
            | Action::ReplayResigned
            | Action::EditReplay
            | Action::EditReplayResigned
            | Action::ReplayTo
            | Action::Mark
            | Action::Diff
            | Action::CopyCurl
    )
}

impl AppState {
    fn select(&mut self, index: usize) -> Vec<Command> {
        if self.rows.is_empty() {
            return Vec::new();
        }
        self.selected = index.min(self.rows.len() - 1);
        let at_end = self.selected + 1 == self.rows.len();
        self.follow = at_end && !self.has_newer;
        if self.follow {
            self.all_seen();
        }
        let mut commands: Vec<Command> = self.detail_for_selection().into_iter().collect();
        if at_end && self.has_newer && !self.loading {
            if let Some(after) = self.rows.back().and_then(|r| r.id) {
                self.loading = true;
                commands.push(Command::LoadNewer { after });
            }
        }
        if self.selected == 0 && self.has_older && !self.loading {
            if let Some(before) = self.rows.front().and_then(|r| r.id) {
                self.loading = true;
                commands.push(Command::LoadOlder { before });
            }
        }
        commands
    }

    /// A replay leaves the selection where it is: the new row arrives below (and the message
    /// names it), and pressing `r` again sends the original again, not the replay.
    fn stay_on_the_original(&mut self) {
        self.follow = false;
    }

    /// ↑/↓ and the page keys: they move what the view shows (the exchange list, the call
    /// list) or scroll the focused pane. The health view has nothing to move.
    fn move_by(&mut self, delta: isize) -> Vec<Command> {
        match (self.view, self.focus) {
            (View::Health, _) => Vec::new(),
            (_, Focus::Detail) => {
                let max = self.detail_scroll_max.get() as isize;
                self.detail_scroll = (self.detail_scroll as isize + delta).clamp(0, max) as u16;
                Vec::new()
            }
            (View::Calls, Focus::List) => {
                let last = self.calls.len().saturating_sub(1) as isize;
                self.call_selected = (self.call_selected as isize + delta).clamp(0, last) as usize;
                Vec::new()
            }
            (View::Exchanges, Focus::List) => {
                let target = self.selected as isize + delta;
                let last = self.rows.len() as isize - 1;
                let beyond = match (target < 0, target > last) {
                    (true, _) if self.has_older => target,
                    (_, true) if self.has_newer => target - last,
                    _ => 0,
                };
                // Past the edge toward more rows: the rest once they are read. A move back
                // within the rows loaded is a change of mind.
                self.pending_move = match beyond {
                    0 => 0,
                    _ => self.pending_move + beyond,
                };
                self.select(target.max(0) as usize)
            }
        }
    }

    /// After a page of older or newer rows came: the movement that went past the edge while
    /// it was read (see [`AppState::pending_move`]).
    pub fn move_on(&mut self) -> Vec<Command> {
        let delta = std::mem::take(&mut self.pending_move);
        // Not if the list is no longer what the keys move (the view or the focus changed).
        if delta == 0 || (self.view, self.focus) != (View::Exchanges, Focus::List) {
            return Vec::new();
        }
        self.move_by(delta)
    }

    /// `g`/Home: the first row of the list shown, or the top of the focused pane.
    fn go_to_first(&mut self) -> Vec<Command> {
        match (self.view, self.focus) {
            (View::Health, _) => {}
            (_, Focus::Detail) => self.detail_scroll = 0,
            (View::Calls, Focus::List) => self.call_selected = 0,
            (View::Exchanges, Focus::List) if self.has_older => {
                if !self.loading {
                    self.loading = true;
                    self.follow = false;
                    return vec![Command::LoadOldest];
                }
            }
            (View::Exchanges, Focus::List) => return self.select(0),
        }
        Vec::new()
    }

    /// `G`/End: the last row of the list shown (in the exchange list, following again), or
    /// the end of the focused pane.
    fn go_to_last(&mut self) -> Vec<Command> {
        match (self.view, self.focus) {
            (View::Health, _) => {}
            (_, Focus::Detail) => self.detail_scroll = self.detail_scroll_max.get(),
            (View::Calls, Focus::List) => {
                self.call_selected = self.calls.len().saturating_sub(1);
            }
            (View::Exchanges, Focus::List) => {
                self.all_seen();
                if self.has_newer {
                    self.loading = true;
                    return vec![Command::Reload];
                }
                self.follow = true;
                return self.select(usize::MAX);
            }
        }
        Vec::new()
    }

    /// The help, the curl command and the diff are drawn over the view, and take the keys
    /// while shown: those that scroll or close them, `?` and quitting. Any other key would
    /// act on what they hide (switch the view, replay, move the selection), unseen.
    fn update_overlay(&mut self, action: Action) -> Vec<Command> {
        let page = self.list_height.max(1) as isize;
        match action {
            Action::Up => self.scroll_overlay(-1),
            Action::Down => self.scroll_overlay(1),
            Action::PageUp => self.scroll_overlay(-page),
            Action::PageDown => self.scroll_overlay(page),
            Action::First => self.scroll_overlay(isize::MIN),
            Action::Last => self.scroll_overlay(isize::MAX),
            Action::Wheel { down, .. } => self.scroll_overlay(if down { 1 } else { -1 }),
            Action::Back if self.help => self.help = false,
            Action::Back if self.popup.is_some() => self.popup = None,
            Action::Back => self.diff = None,
            Action::Help => {
                self.help = !self.help;
                self.help_scroll.set(0);
            }
            Action::Quit => self.quit = true,
            _ => {}
        }
        Vec::new()
    }

    /// Scrolls the topmost overlay by `delta` lines, within what it has to show.
    fn scroll_overlay(&mut self, delta: isize) {
        let by = |from: u16, max: u16| {
            (from as isize).saturating_add(delta).clamp(0, max as isize) as u16
        };
        if self.help {
            // Bounded by the view, which alone knows how many bindings fit.
            let scroll = by(self.help_scroll.get(), u16::MAX);
            self.help_scroll.set(scroll);
        } else {
            self.overlay_scroll = by(self.overlay_scroll, self.overlay_scroll_max.get());
        }
    }

    /// The wheel scrolls the pane under the pointer, whichever has the focus: the detail by
    /// three lines, the list by a row. Over another view it moves as ↑/↓ do (over an
    /// overlay, it scrolls that: see [`AppState::update_overlay`]).
    fn wheel(&mut self, column: u16, row: u16, down: bool) -> Vec<Command> {
        let step: isize = if down { 1 } else { -1 };
        let areas = self.pane_areas.get();
        let at = ratatui::layout::Position::new(column, row);
        if areas.detail.contains(at) {
            let max = self.detail_scroll_max.get() as isize;
            self.detail_scroll = (self.detail_scroll as isize + 3 * step).clamp(0, max) as u16;
            return Vec::new();
        }
        if areas.list.contains(at) {
            let index = (self.selected as isize + step).max(0) as usize;
            return self.select(index);
        }
        self.move_by(step)
    }

    /// A click on a list row selects it; anywhere in a pane focuses that pane.
    fn click(&mut self, column: u16, row: u16) -> Vec<Command> {
        let areas = self.pane_areas.get();
        let at = ratatui::layout::Position::new(column, row);
        if areas.detail.contains(at) {
            self.focus = Focus::Detail;
        } else if areas.list.contains(at) {
            self.focus = Focus::List;
            // The list's border and its header line come before the first row.
            let first_row = areas.list.y + 2;
            let last_row = areas.list.bottom().saturating_sub(1);
            if (first_row..last_row).contains(&row) {
                let index = self.list_top.get() + usize::from(row - first_row);
                if index < self.rows.len() {
                    return self.select(index);
                }
            }
        }
        Vec::new()
    }

    /// A user action. Returns the work the loop must do.
    pub fn update(&mut self, action: Action) -> Vec<Command> {
        if self.input.is_some() {
            return self.update_input(action);
        }
        if action != Action::Resize {
            self.message = None;
        }
        if self.help || self.popup.is_some() || self.diff.is_some() {
            return self.update_overlay(action);
        }
        if self.view != View::Exchanges && acts_on_the_selected_exchange(&action) {
            // Not on an exchange the view hides, which the user cannot see is selected.
            self.message = Some(
                "that key acts on the exchange selected in the list: v goes back to it".into(),
            );
            return Vec::new();
        }
        let page = self.list_height.max(1) as isize;
        match action {
            Action::Up => return self.move_by(-1),
            Action::Down => return self.move_by(1),
            Action::PageUp => return self.move_by(-page),
            Action::PageDown => return self.move_by(page),
            Action::First => return self.go_to_first(),
            Action::Last => return self.go_to_last(),
            Action::Enter => match self.view {
                View::Calls => {
                    if let Some(call) = self.calls.get(self.call_selected) {
                        return vec![Command::LoadCall(call.call_uuid.clone())];
                    }
                }
                View::Exchanges => self.focus = Focus::Detail,
                // One pane, nothing to focus.
                View::Health => {}
            },
            Action::Back => {
                if self.focus == Focus::Detail {
                    self.focus = Focus::List;
                } else if self.view != View::Exchanges {
                    self.view = View::Exchanges;
                    self.detail_scroll = 0;
                } else if !self.filter.is_empty() {
                    self.filter = Filter::default();
                    self.keep_around = self.selected_id();
                    return vec![Command::Reload];
                }
            }
            Action::NextTab => {
                self.tab = (self.tab + 1) % TABS.len();
                self.detail_scroll = 0;
            }
            Action::PrevTab => {
                self.tab = (self.tab + TABS.len() - 1) % TABS.len();
                self.detail_scroll = 0;
            }
            Action::Tab(index) => {
                self.tab = index.min(TABS.len() - 1);
                self.detail_scroll = 0;
            }
            Action::StartFilter => {
                self.input = Some((Prompt::Filter, self.filter.text().to_string()));
            }
            // Said before following stops: nothing will arrive.
            Action::ReplayResigned if self.status.auth_tokens == 0 => {
                if let Some(id) = self.selected_id() {
                    self.message = Some(format!(
                        "#{id} not replayed: {}",
                        crate::replay::ReplayError::NoToken
                    ));
                }
            }
            Action::ReplayAsIs | Action::ReplayResigned => {
                if let Some(id) = self.selected_id() {
                    self.stay_on_the_original();
                    let resign = action == Action::ReplayResigned;
                    self.message = Some(format!(
                        "replaying #{id} {}…",
                        if resign { "re-signed" } else { "as-is" }
                    ));
                    return vec![Command::Replay {
                        id,
                        resign,
                        target: None,
                    }];
                }
            }
            // Said before the editor opens, not after the edit is made and thrown away.
            Action::EditReplayResigned if self.status.auth_tokens == 0 => {
                if let Some(id) = self.selected_id() {
                    self.message = Some(format!(
                        "#{id} not opened: {}",
                        crate::replay::ReplayError::NoToken
                    ));
                }
            }
            Action::EditReplay | Action::EditReplayResigned => {
                if let Some(id) = self.selected_id() {
                    self.stay_on_the_original();
                    let resign = action == Action::EditReplayResigned;
                    return vec![Command::Edit { id, resign }];
                }
            }
            Action::ReplayTo => {
                if self.selected_id().is_some() {
                    self.input = Some((Prompt::ReplayTarget, self.status.forward.clone()));
                }
            }
            Action::Mark => {
                if let Some(id) = self.selected_id() {
                    self.marked = if self.marked == Some(id) {
                        None
                    } else {
                        Some(id)
                    };
                    self.message = Some(match self.marked {
                        Some(id) => format!("marked #{id}: select another and press d to diff"),
                        None => "mark cleared".into(),
                    });
                }
            }
            Action::Diff => match (self.marked, self.selected_id()) {
                (Some(marked), Some(selected)) if marked != selected => {
                    return vec![Command::LoadDiff { marked, selected }];
                }
                _ => {
                    self.message = Some("mark an exchange with m, select another, then d".into());
                }
            },
            Action::CopyCurl => {
                if let Some(id) = self.selected_id() {
                    return vec![Command::CopyCurl(id)];
                }
            }
            Action::Export => {
                self.input = Some((Prompt::ExportPath, "vobiz-tunnel-export.har".into()));
            }
            Action::ToggleFollow => {
                self.follow = !self.follow;
                if self.follow {
                    self.all_seen();
                    return self.select(usize::MAX);
                }
            }
            Action::TogglePause => {
                self.paused = !self.paused;
                if !self.paused {
                    for row in std::mem::take(&mut self.held) {
                        self.arrive(row);
                    }
                    if self.follow {
                        return self.detail_for_selection().into_iter().collect();
                    }
                }
            }
            Action::ToggleRaw => self.raw = !self.raw,
            Action::NextView => {
                self.view = match self.view {
                    View::Exchanges => View::Calls,
                    View::Calls => View::Health,
                    View::Health => View::Exchanges,
                };
                self.focus = Focus::List;
                // The exchange detail and the call timeline share the scroll.
                self.detail_scroll = 0;
                if self.view == View::Calls {
                    // Whatever arrived while another view was shown is read now.
                    self.calls_stale = true;
                    self.timeline_stale = !self.call_timeline.is_empty();
                    return self.refresh_calls();
                }
            }
            Action::Help => {
                self.help = !self.help;
                self.help_scroll.set(0);
            }
            Action::Quit => self.quit = true,
            Action::Wheel { column, row, down } => return self.wheel(column, row, down),
            Action::Click { column, row } => return self.click(column, row),
            Action::Input(_)
            | Action::InputBackspace
            | Action::InputDeleteWord
            | Action::InputClear
            | Action::Submit
            | Action::Resize => {}
        }
        Vec::new()
    }

    fn update_input(&mut self, action: Action) -> Vec<Command> {
        let Some((prompt, text)) = self.input.as_mut() else {
            return Vec::new();
        };
        if *prompt == Prompt::ConfirmOverwrite {
            // Not an answer: the question stays.
            if matches!(
                action,
                Action::Resize | Action::Wheel { .. } | Action::Click { .. }
            ) {
                return Vec::new();
            }
            let path = std::mem::take(text);
            self.input = None;
            return match action {
                Action::Input('y' | 'Y') => vec![Command::Export {
                    path,
                    overwrite: true,
                }],
                Action::Quit => {
                    self.quit = true;
                    Vec::new()
                }
                _ => {
                    self.message = Some(format!("not exported: {path} kept as it was"));
                    Vec::new()
                }
            };
        }
        if matches!(
            action,
            Action::Input(_)
                | Action::InputBackspace
                | Action::InputDeleteWord
                | Action::InputClear
        ) {
            // An error describes the text that was submitted, not the text being typed.
            self.message = None;
        }
        match action {
            Action::Input(c) => text.push(c),
            Action::InputBackspace => {
                text.pop();
            }
            Action::InputDeleteWord => {
                let kept = text.trim_end().rfind(' ').map_or(0, |space| space + 1);
                text.truncate(kept);
            }
            Action::InputClear => text.clear(),
            Action::Back => self.input = None,
            Action::Quit => self.quit = true,
            Action::Submit => {
                let (prompt, text) = (*prompt, text.trim().to_string());
                match prompt {
                    Prompt::Filter => match Filter::parse(&text) {
                        Ok(filter) => {
                            self.input = None;
                            self.filter = filter;
                            self.message = None;
                            return vec![Command::Reload];
                        }
                        Err(e) => self.message = Some(format!("filter: {e}")),
                    },
                    Prompt::ReplayTarget => {
                        self.input = None;
                        if let Some(id) = self.selected_id() {
                            self.stay_on_the_original();
                            self.message = Some(format!("replaying #{id} to {text}…"));
                            return vec![Command::Replay {
                                id,
                                resign: false,
                                target: Some(text),
                            }];
                        }
                    }
                    Prompt::ConfirmOverwrite => {}
                    Prompt::ExportPath => {
                        self.input = None;
                        if !text.is_empty() {
                            return vec![Command::Export {
                                path: text,
                                overwrite: false,
                            }];
                        }
                    }
                }
            }
            _ => {}
        }
        Vec::new()
    }
}
