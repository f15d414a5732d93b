//! Exchanges another process writes into a headless listener's store (a `vobiz-tunnel replay`
//! run, an `import`), published on the listener's event channel so that its log shows them,
//! as the inspector does. The listener's own exchanges reach the log as events already; the
//! others are told apart by their flags (`replay`, `imported`), which a headless listener
//! never writes itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::exchange::{ExchangeId, Flag, Outcome};
use crate::pipeline::ExchangeEvent;
use crate::store::StoreReader;

/// How often the store is looked at: as often as the inspector does.
const POLL: Duration = Duration::from_millis(500);

/// Rows read per look.
const ROWS_PER_LOOK: usize = 500;

/// Follows the store at `path` on a thread of its own until the listener's channel closes.
pub fn spawn(path: PathBuf, events: broadcast::WeakSender<ExchangeEvent>) {
    let spawned = std::thread::Builder::new()
        .name("other-writers".into())
        .spawn(move || {
            crate::thread_priority::lower_current_thread(crate::thread_priority::BACKGROUND);
            follow(path, events);
        });
    if let Err(e) = spawned {
        tracing::warn!("replays by other processes will not be logged: {e}");
    }
}

fn follow(path: PathBuf, events: broadcast::WeakSender<ExchangeEvent>) {
    // From what the store holds as the listener starts: older rows are not news.
    let mut reader = StoreReader::open(&path).ok();
    let mut seen: ExchangeId = reader.as_ref().map_or(0, newest);
    loop {
        std::thread::sleep(POLL);
        let Some(sender) = events.upgrade() else {
            return; // the listener stopped
        };
        let reader = match &mut reader {
            Some(reader) => {
                if let Ok(true) = reader.follow_the_path() {
                    // A new store at the same path: its ids start again.
                    seen = newest(reader);
                }
                reader
            }
            None => match StoreReader::open(&path) {
                Ok(opened) => {
                    seen = newest(&opened);
                    reader.insert(opened)
                }
                Err(_) => continue,
            },
        };
        let Ok(rows) = reader.range(seen + 1, ROWS_PER_LOOK) else {
            continue;
        };
        // In order, up to the first still pending (looked at again next time).
        for row in rows.iter().take_while(|r| r.outcome != Outcome::Pending) {
            let Some(id) = row.id else { continue };
            seen = id;
            let another_writer =
                row.flags.contains(&Flag::Replay) || row.flags.contains(&Flag::Imported);
            if !another_writer {
                continue;
            }
            if let Ok(Some(exchange)) = reader.get(id) {
                let _ = sender.send(ExchangeEvent::Finished(Arc::new(exchange)));
            }
        }
    }
}

/// The newest id in the store (0 when it is empty).
fn newest(reader: &StoreReader) -> ExchangeId {
    reader
        .latest(1)
        .ok()
        .and_then(|rows| rows.last().and_then(|r| r.id))
        .unwrap_or(0)
}
