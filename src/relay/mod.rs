//! The relay: a small public server that carries Vobiz callbacks to a laptop behind NAT over
//! one outbound connection the laptop opens, and the laptop's side of that tunnel.
//!
//! [`protocol`] describes the wire protocol; [`server`] (accept loop, tunnel acceptance) and
//! `public` (carrying one callback) are the relay; [`registry`] maps routes to tunnels;
//! [`client`] is the laptop's side; [`notice`] what the relay tells a laptop about its tunnel
//! (and `rejected` the laptop's record of a callback the relay answered itself); [`log`] the
//! relay's log lines; `command` the subcommand.

pub mod client;
mod command;
pub mod config;
pub mod envelope;
pub mod log;
pub mod notice;
pub mod protocol;
mod public;
pub mod registry;
mod rejected;
pub mod server;
pub mod state;

pub use client::RelayClient;
pub use command::relay_command;
pub use log::RelayLog;
pub use server::RelayServer;
pub use state::RelayState;
