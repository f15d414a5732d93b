//! The live inspector. It runs on a thread of its own next to the proxy: pipeline events come
//! in over a channel and are applied to [`state::AppState`]; keys become actions; commands
//! are carried out here (store reads, replays on the runtime, the editor, the clipboard); a
//! frame is drawn only when something changed: right after input, otherwise at most every
//! [`FRAME`]. Delivery never waits for drawing: a burst is applied in one go and drawn once.

pub mod action;
pub mod diff;
pub mod health;
pub mod state;
pub mod terminal;
pub mod view;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ratatui::crossterm::event;
use time::UtcOffset;
use tokio::sync::broadcast::{self, error::TryRecvError};

use self::action::map_event;
use self::state::{AppState, Command, LastError, Popup, Prompt, StatusInfo, PAGE};
use self::terminal::TerminalGuard;
use crate::config::BaseUrl;
use crate::pipeline::ExchangeEvent;
use crate::replay::{
    parse_raw, to_raw, with_notes, without_notes, EditedRequest, ReplayPlan, Replayer,
};
use crate::store::{ExchangeSummary, Store, StoreError, StoreReader};

/// Shortest time between two frames (30 per second at most).
pub const FRAME: Duration = Duration::from_millis(33);
/// How often the store is asked for exchanges another process recorded (a `replay` run).
const POLL_STORE: Duration = Duration::from_millis(500);
/// How often the call view, when shown, is read again while callbacks arrive: at most every
/// 250 ms, and never more than a fifth of the time (the read groups the last 20 000
/// exchanges: tens of milliseconds on a busy store, done off this thread).
const REFRESH_CALLS: Duration = Duration::from_millis(250);
const REFRESH_CALLS_SHARE: u32 = 4;
/// How long closing the inspector waits for replays still waiting for the local server.
const REPLAYS_GRACE: Duration = Duration::from_secs(2);

/// Events applied before input is looked at again, so keys are answered during a burst.
const EVENTS_PER_TURN: usize = 20_000;

/// What the inspector needs from the running listener.
pub struct TuiContext {
    pub events: broadcast::Receiver<ExchangeEvent>,
    /// The relay tunnel's state when `events` was subscribed (`listen --relay`).
    pub relay: Option<crate::relay::state::RelayState>,
    pub store: Store,
    pub replayer: Replayer,
    pub status: StatusInfo,
    pub offset: UtcOffset,
    /// Set by the signal handler (SIGTERM, SIGINT): leave and restore the terminal.
    pub stop: Arc<AtomicBool>,
    pub runtime: tokio::runtime::Handle,
    /// The development CA the listener's certificate comes from, for copy as curl; `None`
    /// with a certificate of the user's own.
    pub dev_ca: Option<std::path::PathBuf>,
    /// What the settings' warnings said at start (stderr is hidden behind the inspector).
    pub warnings: Vec<String>,
}

/// Results of work done off the UI thread. Pages carry the generation of the request, so
/// the answer to a filter the user has since replaced is dropped.
enum Reply {
    Message(String),
    Page(u64, Result<Reloaded, String>),
    Older(u64, Result<Vec<ExchangeSummary>, String>),
    Newer(u64, Result<Vec<ExchangeSummary>, String>),
    Oldest(u64, Result<Vec<ExchangeSummary>, String>),
    Calls(Result<Vec<crate::store::CallSummary>, String>),
}

/// What a reload read.
struct Reloaded {
    /// The newest matching page, or the page that ends with the exchange kept in view.
    rows: Vec<ExchangeSummary>,
    /// With a kept exchange, the page of rows after it.
    after_kept: Option<Vec<ExchangeSummary>>,
    /// The whole store's counts, read after the rows.
    tally: crate::store::Tally,
    /// Read before the rows: every exchange up to it had ended, and was judged by the filter.
    settled: crate::exchange::ExchangeId,
}

struct App {
    state: AppState,
    ctx: TuiContext,
    reader: StoreReader,
    replies: mpsc::Receiver<Reply>,
    reply_to: mpsc::Sender<Reply>,
    /// Bumped by every reload; pages of older generations are stale.
    generation: u64,
    /// When the call list being read was asked for.
    calls_reading: Option<Instant>,
    /// When the call list may be read again.
    calls_due: Instant,
    /// Replays sent from here and perhaps still waiting for the local server.
    replays: Vec<tokio::task::JoinHandle<()>>,
    /// Under a filter, the newest row the whole store's counting read has reached.
    whole_store_read: crate::exchange::ExchangeId,
    /// Under a filter, the newest row up to which every row has ended and been judged by it:
    /// polls read on from there, so a filter that matches nothing new costs a few rows per
    /// poll, not a scan of the whole store on the UI thread.
    filter_judged: crate::exchange::ExchangeId,
}

/// How far a poll of the rows after `after` that match a filter has judged the store:
/// every row up to `settled` (read before the poll) had ended, unless the page was full and
/// ends before it: the next poll reads on after its last row.
fn judged_through(
    listed: &[ExchangeSummary],
    after: crate::exchange::ExchangeId,
    settled: crate::exchange::ExchangeId,
) -> crate::exchange::ExchangeId {
    let judged = match listed.len() >= PAGE {
        true => listed.last().and_then(|row| row.id).unwrap_or(after),
        false => settled,
    };
    judged.min(settled)
}

/// Runs the inspector until `q`, Ctrl-C or the stop flag. The terminal is restored on every
/// way out, panics included.
pub fn run(ctx: TuiContext) -> anyhow::Result<()> {
    let reader = ctx.store.reader()?;
    let (reply_to, replies) = mpsc::channel();
    let mut state = AppState::new(ctx.status.clone(), ctx.offset);
    if !ctx.warnings.is_empty() {
        state.message = Some(format!("warning: {}", ctx.warnings.join("; warning: ")));
    }
    if let Some(relay) = ctx.relay.clone() {
        state.apply(ExchangeEvent::Relay(relay));
    }
    let mut app = App {
        state,
        ctx,
        reader,
        replies,
        reply_to,
        generation: 0,
        calls_reading: None,
        calls_due: Instant::now(),
        replays: Vec::new(),
        whole_store_read: 0,
        filter_judged: 0,
    };
    let mut terminal = TerminalGuard::enter()?;
    app.execute(Command::Reload, &mut terminal);
    let result = app.run_loop(&mut terminal);
    app.let_replays_end(&mut terminal);
    result
}

impl App {
    /// Replays still waiting for the local server when the inspector closes get a moment to
    /// be answered; the rest are stopped, and their rows say so (see `replay::Unanswered`).
    /// Without this the runtime dropped them later, and their rows stayed `pending`.
    fn let_replays_end(&mut self, terminal: &mut TerminalGuard) {
        let waiting: Vec<_> = self
            .replays
            .drain(..)
            .filter(|r| !r.is_finished())
            .collect();
        if waiting.is_empty() {
            return;
        }
        self.state.message = Some(format!(
            "waiting up to {} s for {} replay(s) to be answered",
            REPLAYS_GRACE.as_secs(),
            waiting.len()
        ));
        let _ = terminal.draw(|frame| view::render(frame, &self.state));
        let store = self.ctx.store.clone();
        self.ctx.runtime.block_on(async move {
            let deadline = tokio::time::Instant::now() + REPLAYS_GRACE;
            for mut replay in waiting {
                if tokio::time::timeout_at(deadline, &mut replay)
                    .await
                    .is_err()
                {
                    replay.abort();
                    let _ = replay.await;
                }
            }
            store.flush().await;
        });
    }

    fn run_loop(&mut self, terminal: &mut TerminalGuard) -> anyhow::Result<()> {
        let mut dirty = true;
        // Input not yet drawn. A key is drawn at once rather than at the next FRAME slot:
        // during a burst the loop draws every FRAME, so a key waited up to 33 ms (17 on
        // average) for its slot, most of what a key took. Keys come at human rates (and a
        // batch of pending input is read before drawing), so this adds few frames.
        let mut input_pending = false;
        let mut last_draw = Instant::now() - FRAME;
        let mut last_poll = Instant::now();
        loop {
            if self.state.quit || self.ctx.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            dirty |= self.drain_events(terminal);
            while let Ok(reply) = self.replies.try_recv() {
                self.receive(reply, terminal);
                dirty = true;
            }
            if last_poll.elapsed() >= POLL_STORE && !self.state.loading {
                last_poll = Instant::now();
                dirty |= self.poll_store(terminal);
            }
            if self.calls_reading.is_none() && Instant::now() >= self.calls_due {
                for command in self.state.refresh_calls() {
                    self.execute(command, terminal);
                    dirty = true;
                }
            }
            if dirty && (input_pending || last_draw.elapsed() >= FRAME) {
                let size = terminal.size()?;
                self.state.list_height = view::list_height(size);
                terminal.draw(|frame| view::render(frame, &self.state))?;
                last_draw = Instant::now();
                dirty = false;
                input_pending = false;
            }
            let wait = if dirty {
                FRAME.saturating_sub(last_draw.elapsed())
            } else {
                FRAME
            };
            if event::poll(wait)? {
                loop {
                    let input = event::read()?;
                    if let Some(action) = map_event(&input, self.state.input_mode()) {
                        for command in self.state.update(action) {
                            self.execute(command, terminal);
                        }
                    }
                    dirty = true;
                    input_pending = true;
                    if !event::poll(Duration::ZERO)? {
                        break;
                    }
                }
            }
        }
    }

    /// Applies queued pipeline events; a lagging queue means a reload from the store.
    fn drain_events(&mut self, terminal: &mut TerminalGuard) -> bool {
        let mut changed = false;
        for _ in 0..EVENTS_PER_TURN {
            match self.ctx.events.try_recv() {
                Ok(event) => {
                    self.state.apply(event);
                    changed = true;
                }
                Err(TryRecvError::Lagged(_)) => {
                    self.execute(Command::Reload, terminal);
                    changed = true;
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
        if changed {
            self.load_missing_detail();
        }
        changed
    }

    fn load_missing_detail(&mut self) {
        let wanted = self.state.selected_id();
        if wanted.is_some() && self.state.detail.as_ref().and_then(|d| d.id) != wanted {
            if let Some(id) = wanted {
                if let Ok(Some(exchange)) = self.reader.get(id) {
                    self.state.set_detail(Arc::new(exchange));
                }
            }
        }
    }

    /// Exchanges recorded by another process on the same store (e.g. `vobiz-tunnel replay`).
    fn poll_store(&mut self, terminal: &mut TerminalGuard) -> bool {
        // The listener started a new store at the same path (the old file was deleted or
        // replaced): read that one from now on, from its newest rows.
        if let Ok(true) = self.reader.follow_the_path() {
            self.state.message = Some(format!(
                "the store file was replaced: now reading the new {}",
                self.reader.path().display()
            ));
            self.state.store_replaced();
            self.whole_store_read = 0; // its ids start again
            self.filter_judged = 0;
            self.execute(Command::Reload, terminal);
            return true;
        }
        let filtered = !self.state.filter.is_empty();
        // Before the rows: what has ended by now is judged by the read that follows.
        let settled = match filtered.then(|| self.reader.settled_through()).transpose() {
            Ok(settled) => settled,
            Err(e) => return self.reading_failed(e),
        };
        let after = self.state.poll_after().max(self.filter_judged);
        let listed = match self.finished_rows_after(&self.state.filter, after) {
            Ok(rows) => rows,
            Err(e) => return self.reading_failed(e),
        };
        if let Some(settled) = settled {
            self.filter_judged = self
                .filter_judged
                .max(judged_through(&listed, after, settled));
        }
        let mut changed = !listed.is_empty();
        self.state.merge_polled(listed);
        if changed {
            self.load_missing_detail();
        }
        if !self.state.filter.is_empty() {
            // The list shows what matches; the counts are the whole store's. Read after the
            // list's rows, which were counted (and, past the loaded window, counted as new)
            // as they were merged: each row is counted once. Read on from where the last of
            // these reads ended, not from the newest row counted: rows the filter hides that
            // came before one it shows would be skipped.
            let whole_store = crate::filter::Filter::default();
            let after = self.whole_store_read.max(self.state.tallied_through());
            match self.finished_rows_after(&whole_store, after) {
                Ok(rows) => {
                    changed |= !rows.is_empty();
                    if let Some(last) = rows.last().and_then(|row| row.id) {
                        self.whole_store_read = last;
                    }
                    self.state.count_polled(&rows);
                }
                Err(e) => return self.reading_failed(e),
            }
        }
        changed
    }

    /// Up to a page of the rows after `after` that match `filter`, up to the first still
    /// pending (read again at the next poll, once it has ended).
    fn finished_rows_after(
        &self,
        filter: &crate::filter::Filter,
        after: crate::exchange::ExchangeId,
    ) -> Result<Vec<ExchangeSummary>, StoreError> {
        let rows = self.reader.page_after(filter, after, PAGE)?;
        Ok(rows.into_iter().take_while(|r| !r.is_under_way()).collect())
    }

    /// A store poll failed: the status line says so.
    fn reading_failed(&mut self, error: StoreError) -> bool {
        self.state.last_error = Some(LastError::new(format!("reading the store: {error}")));
        false
    }

    fn fail(&mut self, what: &str, error: impl std::fmt::Display) {
        self.state.message = Some(format!("{what}: {error}"));
    }

    fn execute(&mut self, command: Command, terminal: &mut TerminalGuard) {
        match command {
            Command::Reload => {
                self.generation += 1;
                self.state.begin_reload();
                // Judged under another filter, perhaps: the reload's answer sets it again.
                self.filter_judged = 0;
                // Around the exchange to keep in view, when there is one: up to and including
                // it, and the page after it, so that it is shown among its neighbours.
                // Taken: a reload asked for after this one (a filter typed meanwhile) reads
                // the newest rows, not around an exchange that may not match it.
                let kept = self.state.keep_around.take();
                self.read_in_background(Reply::Page, move |reader, filter| {
                    let settled = reader.settled_through()?;
                    let rows = reader.page(filter, kept.map(|id| id + 1), PAGE)?;
                    // Only if the page ends with it (else: the newest rows, as usual).
                    let after_kept = match kept {
                        Some(id) if rows.last().and_then(|row| row.id) == Some(id) => {
                            Some(reader.page_after(filter, id, PAGE)?)
                        }
                        Some(_) => {
                            let rows = reader.page(filter, None, PAGE)?;
                            return Ok(Reloaded {
                                rows,
                                after_kept: None,
                                tally: reader.tally()?,
                                settled,
                            });
                        }
                        None => None,
                    };
                    // The page after the kept exchange judged only as far as it goes.
                    let settled = match after_kept.as_deref() {
                        Some(page) if page.len() >= PAGE => {
                            page.last().and_then(|row| row.id).unwrap_or(0).min(settled)
                        }
                        _ => settled,
                    };
                    Ok(Reloaded {
                        rows,
                        after_kept,
                        tally: reader.tally()?,
                        settled,
                    })
                });
            }
            Command::LoadOlder { before } => {
                self.read_in_background(Reply::Older, move |reader, filter| {
                    reader.page(filter, Some(before), PAGE)
                });
            }
            Command::LoadNewer { after } => {
                self.read_in_background(Reply::Newer, move |reader, filter| {
                    reader.page_after(filter, after, PAGE)
                });
            }
            Command::LoadOldest => {
                self.read_in_background(Reply::Oldest, |reader, filter| {
                    reader.page_after(filter, 0, PAGE)
                });
            }
            Command::LoadDetail(id) => match self.reader.get(id) {
                Ok(Some(exchange)) => self.state.set_detail(Arc::new(exchange)),
                Ok(None) => self.fail("loading", format!("#{id} is not in the store")),
                Err(e) => self.fail("loading the exchange", e),
            },
            Command::LoadDiff { marked, selected } => {
                match (self.reader.get(marked), self.reader.get(selected)) {
                    (Ok(Some(a)), Ok(Some(b))) => self.state.show_diff(Arc::new(a), Arc::new(b)),
                    _ => self.fail("diff", "an exchange could not be read"),
                }
            }
            Command::LoadCalls => {
                self.calls_reading = Some(Instant::now());
                self.read_in_background(
                    |_, calls| Reply::Calls(calls),
                    |reader, _| reader.calls(view::CALLS_LISTED),
                );
            }
            Command::LoadCall(uuid) => match self.reader.call(&uuid) {
                Ok(rows) => self.state.set_call_timeline(rows),
                Err(e) => self.fail("loading the call", e),
            },
            Command::RefreshCall(uuid) => match self.reader.call(&uuid) {
                Ok(rows) => self.state.refresh_call_timeline(rows),
                Err(e) => self.fail("loading the call", e),
            },
            Command::Replay { id, resign, target } => {
                let target = match target.as_deref().map(BaseUrl::parse).transpose() {
                    Ok(target) => target,
                    Err(e) => return self.fail("replay target", e),
                };
                let plan = ReplayPlan {
                    resign,
                    target,
                    edited: None,
                };
                self.spawn_replay(id, plan);
            }
            Command::Edit { id, resign } => self.edit_and_replay(id, resign, terminal),
            Command::CopyCurl(id) => match self.reader.get(id) {
                Ok(Some(exchange)) => {
                    let command = crate::export::curl_command(
                        &exchange,
                        &exchange.request.public_url,
                        self.ctx.dev_ca.as_deref(),
                    );
                    let copied = terminal.copy_to_clipboard(&command).is_ok();
                    let title = if copied {
                        format!("#{id} as curl, copied (OSC 52)")
                    } else {
                        format!("#{id} as curl")
                    };
                    self.state.message = Some(format!("{title}; Esc closes"));
                    self.state.show_popup(Popup {
                        title,
                        text: shown_command(command, copied),
                    });
                }
                _ => self.fail("copy as curl", format!("#{id} could not be read")),
            },
            Command::Export { path, overwrite } => {
                let typed = expand_home(&path);
                let file = std::path::absolute(&typed).unwrap_or(typed);
                if file.is_dir() {
                    return self.fail(
                        "export",
                        format!("{} is a folder: type a file name", file.display()),
                    );
                }
                if !overwrite && file.exists() {
                    self.state.input = Some((Prompt::ConfirmOverwrite, path));
                    return;
                }
                self.state.message = Some(format!("exporting to {}…", file.display()));
                self.export_in_background(file, overwrite);
            }
        }
    }

    /// Writes the filtered exchanges to `file` as HAR on a blocking thread with a reader of
    /// its own, and says how it went: a large store takes seconds, and the keys must not wait.
    fn export_in_background(&mut self, file: std::path::PathBuf, overwrite: bool) {
        let filter = self.state.filter.clone();
        let store = self.ctx.store.path().to_path_buf();
        let reply_to = self.reply_to.clone();
        self.ctx.runtime.spawn_blocking(move || {
            let result = StoreReader::open(&store)
                .map_err(anyhow::Error::from)
                .and_then(|reader| {
                    let ids = reader.ids_matching(&filter)?;
                    // Not replacing a file that came between the check for it and now either.
                    let created = crate::export::create_private(&file, overwrite);
                    let created = created
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", file.display()))?;
                    crate::export::export(
                        &reader,
                        &ids,
                        crate::export::Format::Har,
                        std::io::BufWriter::new(created),
                    )
                });
            let message = match result {
                Ok((count, _)) => format!(
                    "exported {} to {}",
                    crate::export::n_exchanges(count),
                    file.display()
                ),
                Err(e) => format!("export: {e:#}"),
            };
            let _ = reply_to.send(Reply::Message(message));
        });
    }

    /// Runs a page query on a blocking thread with a reader of its own: a filter that has to
    /// scan a million rows must not freeze the keys or hold back arrivals.
    fn read_in_background<T: Send + 'static>(
        &mut self,
        reply: fn(u64, Result<T, String>) -> Reply,
        query: impl FnOnce(&StoreReader, &crate::filter::Filter) -> Result<T, StoreError>
            + Send
            + 'static,
    ) {
        let generation = self.generation;
        let filter = self.state.filter.clone();
        let path = self.ctx.store.path().to_path_buf();
        let reply_to = self.reply_to.clone();
        self.ctx.runtime.spawn_blocking(move || {
            let result = StoreReader::open(&path)
                .and_then(|reader| query(&reader, &filter))
                .map_err(|e| e.to_string());
            let _ = reply_to.send(reply(generation, result));
        });
    }

    fn receive(&mut self, reply: Reply, terminal: &mut TerminalGuard) {
        let current = self.generation;
        match reply {
            Reply::Message(message) => self.state.message = Some(message),
            Reply::Page(generation, result) if generation == current => match result {
                Ok(Reloaded {
                    rows,
                    after_kept,
                    tally,
                    settled,
                }) => {
                    self.filter_judged = settled;
                    let next = match after_kept {
                        Some(after_kept) => {
                            self.state.load_page_around(rows, after_kept, tally.total)
                        }
                        None => self.state.load_page(rows, tally.total),
                    };
                    // The whole store's counts, not only the page's.
                    self.state.tallied(&tally);
                    if let Some(next) = next {
                        self.execute(next, terminal);
                    }
                }
                Err(e) => {
                    self.state.loading = false;
                    self.fail("loading exchanges", e);
                }
            },
            Reply::Older(generation, result) if generation == current => match result {
                Ok(rows) => {
                    self.state.load_older(rows);
                    for command in self.state.move_on() {
                        self.execute(command, terminal);
                    }
                }
                Err(e) => {
                    self.state.loading = false;
                    self.state.pending_move = 0; // toward rows that did not come
                    self.fail("loading older exchanges", e);
                }
            },
            Reply::Newer(generation, result) if generation == current => match result {
                Ok(rows) => {
                    self.state.load_newer(rows);
                    self.load_missing_detail();
                    for command in self.state.move_on() {
                        self.execute(command, terminal);
                    }
                }
                Err(e) => {
                    self.state.loading = false;
                    self.state.pending_move = 0; // toward rows that did not come
                    self.fail("loading newer exchanges", e);
                }
            },
            Reply::Calls(result) => {
                let took = self
                    .calls_reading
                    .take()
                    .map_or(Duration::ZERO, |at| at.elapsed());
                self.calls_due = Instant::now() + REFRESH_CALLS.max(took * REFRESH_CALLS_SHARE);
                match result {
                    Ok(calls) => self.state.set_calls(calls),
                    Err(e) => self.fail("loading calls", e),
                }
            }
            Reply::Oldest(generation, result) if generation == current => match result {
                Ok(rows) => {
                    if let Some(next) = self.state.load_oldest(rows) {
                        self.execute(next, terminal);
                    }
                }
                Err(e) => {
                    self.state.loading = false;
                    self.fail("loading the oldest exchanges", e);
                }
            },
            Reply::Page(..) | Reply::Older(..) | Reply::Newer(..) | Reply::Oldest(..) => {}
        }
    }

    fn spawn_replay(&mut self, id: i64, plan: ReplayPlan) {
        let original = match self.reader.get(id) {
            Ok(Some(original)) => original,
            _ => return self.fail("replay", format!("#{id} could not be read")),
        };
        let replayer = self.ctx.replayer.clone();
        let reply_to = self.reply_to.clone();
        self.replays.retain(|replay| !replay.is_finished());
        self.replays.push(self.ctx.runtime.spawn(async move {
            let message = match replayer.replay(&original, &plan).await {
                Ok(replay) => {
                    // A failed send has a status the tool made up (502, 504): say why instead.
                    let result = match (&replay.error, replay.status()) {
                        (Some(error), _) => format!("no answer: {error}"),
                        (None, Some(status)) => status.to_string(),
                        (None, None) => replay.outcome.as_str().to_string(),
                    };
                    format!(
                        "replayed #{id} ({}) as #{}: {result}",
                        plan.describe(),
                        replay.id.map_or("?".into(), |n| n.to_string()),
                    )
                }
                Err(e) => format!("replay of #{id} failed: {e}"),
            };
            let _ = reply_to.send(Reply::Message(message));
        }));
    }

    /// Opens the raw request in `$VISUAL`/`$EDITOR` (vi by default), then replays what was
    /// saved. A save that cannot be read opens the editor again on it, with the reason on top;
    /// quitting without a change (`:q!`) sends nothing.
    fn edit_and_replay(&mut self, id: i64, resign: bool, terminal: &mut TerminalGuard) {
        let original = match self.reader.get(id) {
            Ok(Some(original)) => original,
            _ => return self.fail("edit", format!("#{id} could not be read")),
        };
        let unchanged = to_raw(&original.request);
        let stop = self.ctx.stop.clone();
        let edited = terminal.suspended(|| -> anyhow::Result<Option<EditedRequest>> {
            let file = tempfile::Builder::new()
                .prefix("vobiz-tunnel-request-")
                .suffix(".http")
                .tempfile()?;
            let mut shown = unchanged.clone();
            loop {
                std::fs::write(file.path(), &shown)?;
                run_editor(file.path(), &stop)?;
                let saved = std::fs::read(file.path())?;
                if saved == shown {
                    return Ok(None); // quit without saving a change
                }
                let request = without_notes(&saved);
                match parse_raw(request) {
                    Ok(edited) => return Ok(Some(edited)),
                    Err(e) => {
                        let notes = [
                            format!("{e}"),
                            "fix it and save to replay; quit without saving to send nothing"
                                .to_string(),
                        ];
                        shown = with_notes(&notes, request);
                    }
                }
            }
        });
        match edited {
            // Stopping while the editor was open: nothing new is started.
            Ok(Some(_)) if stop.load(Ordering::Relaxed) => {}
            Ok(Some(request)) => self.spawn_replay(
                id,
                ReplayPlan {
                    resign,
                    target: None,
                    edited: Some(request),
                },
            ),
            Ok(None) => self.fail(
                "edit",
                format!("#{id} was not changed: nothing sent (r replays it as it was)"),
            ),
            Err(e) => self.fail("edit", format!("{e:#}")),
        }
    }
}

/// Runs `$VISUAL`/`$EDITOR` (vi by default) on `path`; an editor that fails (`:cq`) cancels.
/// A stop (SIGTERM, SIGINT to the tool) while it is open asks the editor to leave too, then
/// makes it: the tool must not sit out a stop for as long as someone edits.
fn run_editor(path: &std::path::Path, stop: &AtomicBool) -> anyhow::Result<()> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let mut child = std::process::Command::new(program)
        .args(words)
        .arg(path)
        .spawn()?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if stop.load(Ordering::Relaxed) {
            close_editor(&mut child);
            anyhow::bail!("vobiz-tunnel is stopping: the editor was closed, nothing sent");
        }
        std::thread::sleep(EDITOR_POLL);
    };
    anyhow::ensure!(
        status.success(),
        "{editor} exited with {status}: nothing sent"
    );
    Ok(())
}

/// The most of a curl command the popup shows: it wraps all it holds on every frame, and a
/// command with a body of megabytes made each key wait a quarter of a second.
const SHOWN_COMMAND_BYTES: usize = 64 * 1024;

/// `command` as the popup shows it: whole, or its start and a line saying what is left out.
fn shown_command(mut command: String, copied: bool) -> String {
    if command.len() <= SHOWN_COMMAND_BYTES {
        return command;
    }
    let mut cut = SHOWN_COMMAND_BYTES;
    while !command.is_char_boundary(cut) {
        cut -= 1;
    }
    let left_out = command.len() - cut;
    command.truncate(cut);
    let whole = match copied {
        true => "all of it went to the clipboard by OSC 52, which some terminals cap",
        false => "vobiz-tunnel export writes the request whole",
    };
    command.push_str(&format!(
        "\n… {left_out} more bytes not shown here ({whole})"
    ));
    command
}

/// How often an open editor is looked at, for its end or a stop.
const EDITOR_POLL: Duration = Duration::from_millis(50);

/// Asks the editor to leave (SIGTERM: it restores the terminal and keeps its swap file), and
/// makes it after a moment if it does not.
fn close_editor(child: &mut std::process::Child) {
    #[cfg(target_os = "linux")]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with our own child's pid; it cannot affect memory.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(EDITOR_POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A path typed at a prompt, with a leading `~/` as the shell would read it.
fn expand_home(typed: &str) -> std::path::PathBuf {
    match (typed.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => std::path::PathBuf::from(typed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter that matches nothing new moves its mark to what has ended, so the next poll
    /// reads only the rows after it; a full page, only to its last row.
    #[test]
    fn a_poll_judges_the_store_up_to_what_had_ended() {
        let rows = |ids: std::ops::RangeInclusive<i64>| -> Vec<ExchangeSummary> {
            ids.map(|id| state::tests::summary(id, "Hangup")).collect()
        };
        assert_eq!(judged_through(&[], 0, 900_000), 900_000, "nothing matched");
        assert_eq!(judged_through(&rows(10..=12), 5, 900), 900);
        let full = rows(1..=PAGE as i64);
        assert_eq!(judged_through(&full, 0, 900_000), PAGE as i64);
        // Under way from row 40 on: judged as far as 39, whatever matched after it.
        assert_eq!(judged_through(&rows(50..=51), 0, 39), 39);
    }

    #[test]
    fn a_long_curl_command_is_shown_in_part_and_says_so() {
        let short = "curl 'https://localhost/cb'".to_string();
        assert_eq!(shown_command(short.clone(), true), short);
        // Multi-byte characters across the cut: it falls on a character's start.
        let long = format!("curl --data-binary '{}'", "é".repeat(SHOWN_COMMAND_BYTES));
        let shown = shown_command(long.clone(), true);
        let (start, note) = shown.rsplit_once('\n').unwrap();
        assert!(start.len() <= SHOWN_COMMAND_BYTES && long.starts_with(start));
        let left_out = long.len() - start.len();
        assert_eq!(
            note,
            format!(
                "… {left_out} more bytes not shown here (all of it went to the clipboard by \
                 OSC 52, which some terminals cap)"
            )
        );
        assert!(
            shown_command(long, false).ends_with("(vobiz-tunnel export writes the request whole)")
        );
    }
}
