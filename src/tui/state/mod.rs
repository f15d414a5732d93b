//! The inspector's state and its rules. [`AppState`] does no I/O: it applies pipeline events
//! and user [`Action`](super::action::Action)s, and answers with [`Command`]s for the loop to carry out (store reads,
//! replays, the editor, the clipboard). That keeps every behaviour unit-testable.

mod update;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use time::UtcOffset;

use super::action::InputMode;
use super::health::Health;
use crate::exchange::{Exchange, ExchangeId};
use crate::filter::Filter;
use crate::pipeline::ExchangeEvent;
use crate::store::{CallSummary, ExchangeSummary, Tally};

/// Rows loaded per page from the store.
pub const PAGE: usize = 500;
/// Rows kept in memory; older ones are dropped and reloaded on demand.
pub const MAX_ROWS: usize = 20_000;
/// Ids remembered as counted, so an exchange seen both as an event and by polling the store
/// is counted once (ids arrive nearly in order, so a window of recent ones is enough).
const COUNTED_WINDOW: usize = 50_000;

/// Where a counted exchange counts: its status class and verdict (see [`Tally`]).
#[derive(Clone, Copy, Debug)]
struct Counted {
    class: usize,
    verdict: usize,
}

impl Counted {
    fn of(summary: &ExchangeSummary) -> Counted {
        Counted {
            class: Tally::class_index(summary.status),
            verdict: Tally::verdict_index(summary.signature),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Exchanges,
    Calls,
    Health,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    List,
    Detail,
}

/// Detail tabs, in order.
pub const TABS: [&str; 4] = ["Request", "Response", "Signature", "Timing"];

/// What a text line at the bottom is reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prompt {
    Filter,
    ReplayTarget,
    ExportPath,
    /// The export file exists (the prompt's text is its path): `y` overwrites it, any other
    /// key keeps it.
    ConfirmOverwrite,
}

/// Work for the loop. Replays carry the id, never the row: the loop reads the stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    LoadDetail(ExchangeId),
    LoadOlder {
        before: ExchangeId,
    },
    /// Rows after the last loaded one (the list was paged back past its memory cap).
    LoadNewer {
        after: ExchangeId,
    },
    /// The first page of matching rows (`g` with older rows than those loaded).
    LoadOldest,
    /// The filter changed (or the newest rows are wanted): load the newest matching page.
    Reload,
    Replay {
        id: ExchangeId,
        resign: bool,
        target: Option<String>,
    },
    Edit {
        id: ExchangeId,
        resign: bool,
    },
    CopyCurl(ExchangeId),
    Export {
        path: String,
        /// Replace the file if it exists (the user said so); otherwise the loop asks first.
        overwrite: bool,
    },
    LoadDiff {
        marked: ExchangeId,
        selected: ExchangeId,
    },
    LoadCalls,
    /// Open one call's timeline (moves the focus to it).
    LoadCall(String),
    /// Read the open timeline again: callbacks of its call arrived.
    RefreshCall(String),
}

/// A titled text shown over the view, wrapped, so that all of it can be read and selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Popup {
    pub title: String,
    pub text: String,
}

/// Facts for the status bar, fixed at start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusInfo {
    pub listen_url: String,
    pub forward: String,
    pub store_path: String,
    pub auth_tokens: usize,
    pub main_auth_tokens: usize,
}

/// Everything the screen shows.
pub struct AppState {
    pub offset: UtcOffset,
    pub status: StatusInfo,
    /// Loaded rows matching the filter, ascending id. A deque: once [`MAX_ROWS`] are loaded,
    /// every arrival drops the oldest row, and `Vec::drain(..1)` shifted all 20 000 rows
    /// (~4 MB) per arrival: in a burst that was half the process's CPU, on the UI thread, and
    /// keys went unanswered for seconds. `pop_front` is O(1).
    pub rows: VecDeque<ExchangeSummary>,
    pub selected: usize,
    /// Rows older than `rows[0]` exist in the store.
    pub has_older: bool,
    /// Movement past the first or last loaded row, toward rows being read: applied when they
    /// come, so that a key pressed while a page loads is not lost (see [`Self::move_on`]).
    pub pending_move: isize,
    /// The exchange the next reload must show selected, rather than the newest: the one
    /// selected when the filter was cleared, so the user sees it among its neighbours.
    pub keep_around: Option<ExchangeId>,
    /// Rows newer than the last loaded one exist (dropped to stay within [`MAX_ROWS`], or not
    /// read yet after `g`): they are read when the user scrolls down to them.
    pub has_newer: bool,
    /// A page is being read from the store.
    pub loading: bool,
    pub follow: bool,
    pub paused: bool,
    /// Arrivals held while paused.
    pub held: Vec<ExchangeSummary>,
    /// Arrivals since the user scrolled away from the newest.
    pub unseen: usize,
    /// Arrivals past the loaded window (while `has_newer`), each counted in `unseen` once:
    /// one exchange comes as pending and again as finished, and the store poll may find it
    /// before its event is applied.
    unseen_past_window: BTreeSet<ExchangeId>,
    pub view: View,
    pub focus: Focus,
    pub tab: usize,
    pub raw: bool,
    pub detail: Option<Arc<Exchange>>,
    pub detail_scroll: u16,
    pub filter: Filter,
    pub input: Option<(Prompt, String)>,
    pub marked: Option<ExchangeId>,
    pub diff: Option<(Arc<Exchange>, Arc<Exchange>)>,
    pub help: bool,
    /// Text too long for the status line (a curl command), shown whole until Esc.
    pub popup: Option<Popup>,
    /// The first line shown of the popup or of the diff, whichever is open (one at a time:
    /// an overlay takes the keys that would open the other).
    pub overlay_scroll: u16,
    /// How far that overlay can scroll (its lines less its height), as last drawn.
    pub overlay_scroll_max: std::cell::Cell<u16>,
    /// The popup's text wrapped at a width, as `(width, lines)`: measuring a long command
    /// costs as much as drawing it (a 5 MiB body, a fifth of a second), so once per width.
    pub popup_lines: std::cell::Cell<Option<(u16, usize)>>,
    pub message: Option<String>,
    pub last_error: Option<LastError>,
    /// The tunnel to the relay, when listening through one.
    pub relay: Option<crate::relay::RelayState>,
    /// Exchanges in the store (counted at each reload, then arrivals).
    pub total: u64,
    /// Health of the exchanges loaded at start and of every arrival since.
    pub health: Health,
    /// Exchanges counted in `total` and the health counts, with where they count.
    counted: BTreeMap<ExchangeId, Counted>,
    /// The newest exchange the store's own counts held when last read ([`AppState::tallied`]):
    /// an arrival up to it is in them already.
    tallied_through: Option<ExchangeId>,
    /// Those the counts held as pending ("no status"): their end moves them.
    pending_when_tallied: std::collections::HashSet<ExchangeId>,
    seeded: bool,
    pub calls: Vec<CallSummary>,
    pub call_selected: usize,
    pub call_timeline: Vec<ExchangeSummary>,
    /// Callbacks of some call arrived since `calls` was read.
    calls_stale: bool,
    /// Callbacks of the open timeline's call arrived since it was read.
    timeline_stale: bool,
    /// Rows the list shows at once (set by the loop from the layout).
    pub list_height: usize,
    /// Index of the list's first visible row as last drawn: the window moves only when the
    /// selection would leave it (set by the view, hence a `Cell`).
    pub list_top: std::cell::Cell<usize>,
    /// How far the detail pane can scroll (its lines less its height), as last drawn.
    pub detail_scroll_max: std::cell::Cell<u16>,
    /// Where the exchange list and the detail pane were last drawn (empty in other views),
    /// for the mouse.
    pub pane_areas: std::cell::Cell<PaneAreas>,
    /// The help overlay's first shown binding (bounded by the view to what the screen hides).
    pub help_scroll: std::cell::Cell<u16>,
    pub quit: bool,
}

/// Screen rectangles of the exchange view's two panes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaneAreas {
    pub list: ratatui::layout::Rect,
    pub detail: ratatui::layout::Rect,
}

/// The most recent error, kept until another replaces it (it is the *last* error, not the
/// current state), with what tells whether it still matters: its age and how many exchanges
/// were answered normally since.
#[derive(Clone, Debug, PartialEq)]
pub struct LastError {
    pub text: String,
    pub at: std::time::Instant,
    pub answered_since: u64,
}

impl LastError {
    pub fn new(text: String) -> Self {
        LastError {
            text,
            at: std::time::Instant::now(),
            answered_since: 0,
        }
    }
}

impl AppState {
    pub fn new(status: StatusInfo, offset: UtcOffset) -> AppState {
        AppState {
            offset,
            status,
            rows: VecDeque::new(),
            selected: 0,
            has_older: false,
            pending_move: 0,
            has_newer: false,
            keep_around: None,
            loading: false,
            follow: true,
            paused: false,
            held: Vec::new(),
            unseen: 0,
            unseen_past_window: BTreeSet::new(),
            view: View::Exchanges,
            focus: Focus::List,
            tab: 0,
            raw: false,
            detail: None,
            detail_scroll: 0,
            filter: Filter::default(),
            input: None,
            marked: None,
            diff: None,
            help: false,
            popup: None,
            overlay_scroll: 0,
            overlay_scroll_max: std::cell::Cell::new(u16::MAX),
            popup_lines: std::cell::Cell::new(None),
            message: None,
            last_error: None,
            relay: None,
            total: 0,
            health: Health::default(),
            counted: BTreeMap::new(),
            tallied_through: None,
            pending_when_tallied: Default::default(),
            seeded: false,
            calls: Vec::new(),
            call_selected: 0,
            call_timeline: Vec::new(),
            calls_stale: false,
            timeline_stale: false,
            list_height: 20,
            list_top: std::cell::Cell::new(0),
            detail_scroll_max: std::cell::Cell::new(u16::MAX),
            pane_areas: std::cell::Cell::default(),
            help_scroll: std::cell::Cell::new(0),
            quit: false,
        }
    }

    pub fn input_mode(&self) -> InputMode {
        if self.input.is_some() {
            InputMode::Text
        } else {
            InputMode::Navigate
        }
    }

    pub fn selected_row(&self) -> Option<&ExchangeSummary> {
        self.rows.get(self.selected)
    }

    pub fn selected_id(&self) -> Option<ExchangeId> {
        self.selected_row().and_then(|r| r.id)
    }

    /// The newest page after start-up or a filter change. `total` counts the whole store.
    pub fn load_page(&mut self, rows: Vec<ExchangeSummary>, total: u64) -> Option<Command> {
        self.keep_around = None;
        self.loading = false;
        self.has_older = rows.len() >= PAGE;
        self.has_newer = false;
        self.rows = self.with_arrivals_during_the_read(rows).into();
        self.total = total;
        self.all_seen();
        self.follow = true;
        self.selected = self.rows.len().saturating_sub(1);
        self.seed_health();
        self.detail_for_selection()
    }

    /// What a reload that keeps an exchange in view read (see [`AppState::keep_around`]): the
    /// page that ends with it, and the rows after it. The kept exchange is selected in the
    /// middle of the list, among its neighbours on both sides.
    pub fn load_page_around(
        &mut self,
        through_kept: Vec<ExchangeSummary>,
        after_kept: Vec<ExchangeSummary>,
        total: u64,
    ) -> Option<Command> {
        self.keep_around = None;
        self.loading = false;
        self.has_older = through_kept.len() >= PAGE;
        self.has_newer = after_kept.len() >= PAGE;
        let kept = through_kept.len().saturating_sub(1);
        let mut rows = through_kept;
        rows.extend(after_kept);
        self.rows = if self.has_newer {
            // Arrivals come after rows not loaded yet: read with them on the way down.
            rows.into()
        } else {
            self.with_arrivals_during_the_read(rows).into()
        };
        self.total = total;
        self.all_seen();
        self.follow = self.rows.is_empty();
        self.selected = kept;
        self.list_top
            .set(kept.saturating_sub(self.list_height.saturating_sub(1) / 2));
        self.seed_health();
        self.detail_for_selection()
    }

    /// `rows`, read from the store during a reload, followed by the arrivals applied while
    /// they were read that are newer than what the query saw.
    fn with_arrivals_during_the_read(
        &mut self,
        mut rows: Vec<ExchangeSummary>,
    ) -> Vec<ExchangeSummary> {
        let newest_loaded = rows.last().and_then(|r| r.id).unwrap_or(i64::MIN);
        rows.extend(
            std::mem::take(&mut self.rows)
                .into_iter()
                .filter(|r| r.id.is_some_and(|id| id > newest_loaded)),
        );
        rows
    }

    /// The health view starts from what was loaded first, then follows arrivals.
    fn seed_health(&mut self) {
        if self.seeded {
            return;
        }
        self.seeded = true;
        for row in &self.rows {
            // Arrivals merged into the page were counted when they came.
            let fresh = row
                .id
                .is_none_or(|id| self.counted.insert(id, Counted::of(row)).is_none());
            if fresh {
                self.health.add(row);
            }
        }
    }

    /// The user is at the newest row: nothing is unseen any more.
    fn all_seen(&mut self) {
        self.unseen = 0;
        self.unseen_past_window.clear();
    }

    /// The listener started a new store at the same path: what was counted and seen belongs
    /// to the old one (its ids come back from 1). The reload that follows counts anew.
    pub fn store_replaced(&mut self) {
        self.counted.clear();
        self.tallied_through = None;
        self.pending_when_tallied.clear();
        self.seeded = false;
        self.health = Health::default();
        self.calls_stale = true;
        // Ids name other exchanges now.
        self.marked = None;
        self.diff = None;
        self.detail = None;
        self.held.clear();
        self.call_timeline.clear();
    }

    /// A reload is under way: forget the rows (they belong to the old filter); arrivals from
    /// now on are kept and merged with the page when it comes. So are the rows held while
    /// paused: they matched the old filter, and the page read now holds those that match
    /// the new one.
    pub fn begin_reload(&mut self) {
        self.loading = true;
        self.pending_move = 0;
        self.rows.clear();
        self.held.clear();
        self.selected = 0;
        self.has_newer = false;
    }

    /// The store's own counts, read with each (re)load: they replace what was counted so far.
    /// Arrivals counted while they were read, but committed after them, are added back; an
    /// arrival that comes later although they hold it is not counted again.
    pub fn tallied(&mut self, tally: &Tally) {
        self.health.set_counts(tally);
        self.total = tally.total;
        self.tallied_through = tally.newest;
        self.pending_when_tallied = tally.pending.iter().copied().collect();
        let after = tally.newest.map_or(Bound::Unbounded, Bound::Excluded);
        for counted in self
            .counted
            .range((after, Bound::Unbounded))
            .map(|(_, c)| *c)
        {
            self.total += 1;
            self.health.count(counted.class, counted.verdict);
        }
    }

    /// Counts an exchange once in `total` and the health, however often it is delivered.
    fn count_once(&mut self, summary: &ExchangeSummary) {
        if let Some(id) = summary.id {
            if self.counted.insert(id, Counted::of(summary)).is_some() {
                return;
            }
            if self.counted.len() > COUNTED_WINDOW * 2 {
                while self.counted.len() > COUNTED_WINDOW {
                    self.counted.pop_first();
                }
            }
            if self.tallied_through.is_some_and(|through| id <= through) {
                // In the store's counts already: only its path's figures are news, and the
                // class of its answer if it was counted while pending.
                if self.pending_when_tallied.remove(&id) && summary.status.is_some() {
                    let class = Tally::class_index(summary.status);
                    self.health.by_class[0] = self.health.by_class[0].saturating_sub(1);
                    self.health.by_class[class] += 1;
                }
                self.health.add_path(summary);
                return;
            }
        }
        self.total += 1;
        self.health.add(summary);
    }

    /// Older rows, prepended when the user scrolled to the top of what is loaded. The newest
    /// rows are dropped past [`MAX_ROWS`] (and read again when the user scrolls back down).
    pub fn load_older(&mut self, older: Vec<ExchangeSummary>) {
        self.loading = false;
        self.has_older = older.len() >= PAGE;
        let first_id = self.rows.front().and_then(|r| r.id).unwrap_or(i64::MAX);
        let older: Vec<_> = older
            .into_iter()
            .filter(|r| r.id.is_some_and(|id| id < first_id))
            .collect();
        self.selected += older.len();
        self.list_top.set(self.list_top.get() + older.len());
        for row in older.into_iter().rev() {
            self.rows.push_front(row);
        }
        if self.rows.len() > MAX_ROWS {
            self.rows.truncate(MAX_ROWS);
            self.selected = self.selected.min(MAX_ROWS - 1);
            self.has_newer = true;
            self.follow = false;
        }
    }

    /// Newer rows, appended when the user scrolled back down past what is loaded.
    pub fn load_newer(&mut self, newer: Vec<ExchangeSummary>) {
        self.loading = false;
        self.has_newer = newer.len() >= PAGE;
        let last_id = self.rows.back().and_then(|r| r.id).unwrap_or(i64::MIN);
        self.rows.extend(
            newer
                .into_iter()
                .filter(|r| r.id.is_some_and(|id| id > last_id)),
        );
        if self.rows.len() > MAX_ROWS {
            let excess = self.rows.len() - MAX_ROWS;
            self.rows.drain(..excess);
            self.selected = self.selected.saturating_sub(excess);
            self.list_top
                .set(self.list_top.get().saturating_sub(excess));
            self.has_older = true;
        }
    }

    /// The oldest matching rows, for `g`/Home when older rows than those loaded exist: the
    /// list starts over from the beginning instead of paging back to it.
    pub fn load_oldest(&mut self, oldest: Vec<ExchangeSummary>) -> Option<Command> {
        self.loading = false;
        self.pending_move = 0;
        self.has_older = false;
        self.has_newer = oldest.len() >= PAGE;
        self.rows = oldest.into();
        self.selected = 0;
        self.list_top.set(0);
        self.follow = !self.has_newer && self.rows.len() <= 1;
        self.detail_for_selection()
    }

    /// Rows another process (a `replay` run) wrote, found by polling the store.
    pub fn merge_polled(&mut self, rows: Vec<ExchangeSummary>) {
        for row in rows {
            self.count_once(&row);
            self.note_call(row.call_uuid.as_deref());
            self.arrive(row);
        }
    }

    /// The newest id shown or held.
    pub fn newest_id(&self) -> Option<ExchangeId> {
        self.held
            .last()
            .and_then(|r| r.id)
            .max(self.rows.back().and_then(|r| r.id))
    }

    /// Where the store poll asks for rows another process wrote: after the newest row shown
    /// or held. While newer rows than the loaded window exist, after the newest the store is
    /// known to hold: the rows in between are not news (they are read when the user scrolls
    /// down to them), and asking from the window's end read them again on every poll.
    pub fn poll_after(&self) -> ExchangeId {
        let shown = self.newest_id().unwrap_or(0);
        if !self.has_newer {
            return shown;
        }
        shown.max(self.newest_counted())
    }

    /// The newest exchange counted in `total` and the health counts (0: none). Counting
    /// exchanges other processes write asks for those after it.
    /// The newest row the store's counts held when they were read (0 before that).
    pub fn tallied_through(&self) -> ExchangeId {
        self.tallied_through.unwrap_or(0)
    }

    pub fn newest_counted(&self) -> ExchangeId {
        let counted = self.counted.last_key_value().map(|(&id, _)| id);
        counted.max(self.tallied_through).unwrap_or(0)
    }

    /// Rows another process wrote, read whatever the filter (which may hide them from the
    /// list): the top bar and the health view count the whole store.
    pub fn count_polled(&mut self, rows: &[ExchangeSummary]) {
        for row in rows {
            self.count_once(row);
            self.note_call(row.call_uuid.as_deref());
        }
    }

    /// Shows `popup` over the view, from its first line.
    pub fn show_popup(&mut self, popup: Popup) {
        self.popup = Some(popup);
        self.popup_lines.set(None);
        self.overlay_scroll = 0;
    }

    /// Shows the diff of the marked exchange (`left`) and the selected one, from its top.
    pub fn show_diff(&mut self, left: Arc<Exchange>, right: Arc<Exchange>) {
        self.diff = Some((left, right));
        self.overlay_scroll = 0;
    }

    pub fn set_detail(&mut self, exchange: Arc<Exchange>) {
        if exchange.id == self.selected_id() {
            self.detail = Some(exchange);
        }
    }

    /// A pipeline event. Returns a command when the shown detail must be reloaded.
    pub fn apply(&mut self, event: ExchangeEvent) {
        match event {
            // Shown at once, counted when it ends (its `Finished` replaces the row in place).
            ExchangeEvent::Pending(exchange) => {
                self.note_call(exchange.call_uuid.as_deref());
                if self.filter.matches(&exchange)
                    && self.arrive(ExchangeSummary::of(&exchange))
                    && self.selected_id() == exchange.id
                {
                    self.detail = Some(exchange);
                    if self.view == View::Exchanges {
                        self.detail_scroll = 0;
                    }
                }
            }
            ExchangeEvent::Finished(exchange) => {
                let summary = ExchangeSummary::of(&exchange);
                self.count_once(&summary);
                self.note_call(summary.call_uuid.as_deref());
                if let Some(error) = &exchange.error {
                    let id = exchange.id.map_or("?".into(), |id| id.to_string());
                    let request = &exchange.request;
                    self.last_error = Some(LastError::new(format!(
                        "#{id} {} {}: {error}",
                        request.method,
                        request.path()
                    )));
                } else if let Some(last) = &mut self.last_error {
                    last.answered_since += 1;
                }
                if !self.filter.matches(&exchange) {
                    // Shown while it matched (`status:none` while pending): not any more.
                    self.forget(exchange.id);
                    return;
                }
                let newest = self.arrive(summary);
                // The selected exchange's detail follows it from pending to its end.
                if self.selected_id() == exchange.id {
                    self.detail = Some(exchange);
                    // The scroll is the call timeline's while that view is shown.
                    if newest && self.view == View::Exchanges {
                        self.detail_scroll = 0;
                    }
                }
            }
            ExchangeEvent::StoreError(message) => self.last_error = Some(LastError::new(message)),
            ExchangeEvent::ConnectionFailed {
                client_addr,
                reason,
            } => {
                let from = client_addr.map_or("?".into(), |a| a.to_string());
                self.last_error = Some(LastError::new(format!("connection from {from}: {reason}")));
            }
            ExchangeEvent::Relay(relay_state) => {
                if !relay_state.is_connected() {
                    self.last_error = Some(LastError::new(relay_state.describe()));
                }
                self.relay = Some(relay_state);
            }
        }
    }

    /// Removes the row of `id`, if shown, keeping the selection on the same exchange (or its
    /// neighbour when it was the one removed).
    fn forget(&mut self, id: Option<ExchangeId>) {
        let Some(id) = id else { return };
        self.held.retain(|r| r.id != Some(id));
        let position = self.rows.partition_point(|r| r.id.unwrap_or(i64::MAX) < id);
        if self.rows.get(position).is_none_or(|r| r.id != Some(id)) {
            return;
        }
        self.rows.remove(position);
        if position < self.selected || self.selected >= self.rows.len() {
            self.selected = self.selected.saturating_sub(1);
        }
    }

    /// Adds an arrival; returns whether it became the selection.
    fn arrive(&mut self, summary: ExchangeSummary) -> bool {
        let id = summary.id;
        if self.paused {
            match self.held.iter_mut().find(|r| id.is_some() && r.id == id) {
                Some(existing) => *existing = summary,
                None => self.held.push(summary),
            }
            return false;
        }
        // Rows are sorted by id: an id already shown is replaced in place.
        let key = id.unwrap_or(i64::MAX);
        let position = self
            .rows
            .partition_point(|r| r.id.unwrap_or(i64::MAX) < key);
        if id.is_some() && self.rows.get(position).is_some_and(|r| r.id == id) {
            self.rows[position] = summary;
            return false;
        }
        if self.has_newer && position == self.rows.len() {
            // Newer rows are not loaded; this one will be read with them.
            if id.is_none_or(|id| self.unseen_past_window.insert(id)) {
                self.unseen += 1;
                if self.unseen_past_window.len() > COUNTED_WINDOW {
                    self.unseen_past_window.pop_first();
                }
            }
            return false;
        }
        self.rows.insert(position, summary);
        // The selection and the window stay on the same rows (following, they move to the
        // newest anyway).
        if position <= self.selected && !self.follow && self.rows.len() > 1 {
            self.selected += 1;
        }
        if position < self.list_top.get() && !self.follow {
            self.list_top.set(self.list_top.get() + 1);
        }
        if self.rows.len() > MAX_ROWS {
            let excess = self.rows.len() - MAX_ROWS;
            self.rows.drain(..excess);
            self.selected = self.selected.saturating_sub(excess);
            self.list_top
                .set(self.list_top.get().saturating_sub(excess));
            self.has_older = true;
        }
        if self.follow {
            self.selected = self.rows.len() - 1;
            true
        } else {
            self.unseen += 1;
            false
        }
    }

    fn detail_for_selection(&mut self) -> Option<Command> {
        let id = self.selected_id()?;
        if self.detail.as_ref().and_then(|d| d.id) == Some(id) {
            return None;
        }
        self.detail_scroll = 0;
        Some(Command::LoadDetail(id))
    }

    /// The call list, read again: the selection stays on the same call as newer calls come
    /// in above it.
    pub fn set_calls(&mut self, calls: Vec<CallSummary>) {
        let selected = self
            .calls
            .get(self.call_selected)
            .map(|c| c.call_uuid.clone());
        self.calls = calls;
        self.call_selected = selected
            .and_then(|uuid| self.calls.iter().position(|c| c.call_uuid == uuid))
            .unwrap_or(self.call_selected)
            .min(self.calls.len().saturating_sub(1));
    }

    /// A call opened with Enter: its timeline, focused.
    pub fn set_call_timeline(&mut self, rows: Vec<ExchangeSummary>) {
        self.call_timeline = rows;
        self.timeline_stale = false;
        self.focus = Focus::Detail;
        self.detail_scroll = 0;
    }

    /// The open timeline, read again; focus and scroll stay.
    pub fn refresh_call_timeline(&mut self, rows: Vec<ExchangeSummary>) {
        self.call_timeline = rows;
    }

    /// The call the open timeline shows.
    fn timeline_call(&self) -> Option<&str> {
        self.call_timeline.first()?.call_uuid.as_deref()
    }

    /// A callback of `call_uuid` arrived: the call view is out of date.
    fn note_call(&mut self, call_uuid: Option<&str>) {
        let Some(uuid) = call_uuid else { return };
        self.calls_stale = true;
        if self.timeline_call() == Some(uuid) {
            self.timeline_stale = true;
        }
    }

    /// What to read again so that the call view, when shown, follows arrivals. The loop
    /// calls this at most every few hundred milliseconds: a burst is then one read, not one
    /// per callback.
    pub fn refresh_calls(&mut self) -> Vec<Command> {
        if self.view != View::Calls {
            return Vec::new();
        }
        let mut commands = Vec::new();
        if std::mem::take(&mut self.calls_stale) {
            commands.push(Command::LoadCalls);
        }
        if std::mem::take(&mut self.timeline_stale) {
            if let Some(uuid) = self.timeline_call() {
                commands.push(Command::RefreshCall(uuid.to_string()));
            }
        }
        commands
    }
}

#[cfg(test)]
pub(crate) mod tests;
