//! The laptop's view of its tunnel to the relay, shown in the log and the inspector.

use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::pipeline::ExchangeEvent;

/// The tunnel's latest state, kept beside the event stream. The log printer and the
/// inspector subscribe after the tunnel has started, by when "connecting" (and often
/// "connected") has been sent to nobody; they read it here once instead.
#[derive(Debug, Default)]
pub struct LatestRelayState(Mutex<Option<RelayState>>);

impl LatestRelayState {
    /// Sends `state` to the subscribers and keeps it, as one step against [`Self::subscribe`].
    pub fn publish(&self, events: &broadcast::Sender<ExchangeEvent>, state: RelayState) {
        let mut latest = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = events.send(ExchangeEvent::Relay(state.clone()));
        *latest = Some(state);
    }

    /// A new subscription to `events`, and the state the tunnel was in when it began: the
    /// subscriber learns that state, then every later one, none twice (states before it are
    /// not replayed).
    pub fn subscribe(
        &self,
        events: &broadcast::Sender<ExchangeEvent>,
    ) -> (broadcast::Receiver<ExchangeEvent>, Option<RelayState>) {
        let latest = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (events.subscribe(), latest.clone())
    }
}

/// Where the tunnel stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RelayState {
    Connecting {
        relay: String,
    },
    /// Callbacks to `public_url` now reach this machine.
    Connected {
        relay: String,
        public_url: String,
    },
    /// The connection failed or dropped; the next attempt is in `retry_in_secs`.
    Reconnecting {
        relay: String,
        reason: String,
        retry_in_secs: f64,
    },
    /// The relay refused the token (or the route); retried less often.
    Refused {
        relay: String,
        reason: String,
        retry_in_secs: f64,
    },
    /// Another laptop (at `by`, as the relay saw it) connected with the same token and now
    /// gets the callbacks; this one does not reconnect, or the two would take turns.
    Replaced {
        relay: String,
        by: String,
    },
}

impl RelayState {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            RelayState::Connecting { relay } => format!("relay: connecting to {relay}…"),
            RelayState::Connected { relay, public_url } => {
                format!("relay: connected to {relay}; callbacks to {public_url} reach this machine")
            }
            RelayState::Reconnecting {
                relay,
                reason,
                retry_in_secs,
            } => format!("relay: {relay} unreachable ({reason}); retrying in {retry_in_secs:.1} s"),
            RelayState::Refused {
                relay,
                reason,
                retry_in_secs,
            } => format!(
                "relay: {relay} refused this machine ({reason}); retrying in {retry_in_secs:.0} s"
            ),
            RelayState::Replaced { relay, by } => format!(
                "relay: another laptop ({by}) connected to {relay} with the same token and now \
                 gets the callbacks; not reconnecting (restart to take them back)"
            ),
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self, RelayState::Connected { .. })
    }
}
