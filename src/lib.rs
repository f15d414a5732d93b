//! vobiz-tunnel: a TLS-terminating reverse proxy for Vobiz callbacks that checks signatures
//! (and explains failures), records every exchange durably and forwards each one
//! byte-for-byte to the developer's local server.
//!
//! ```text
//!   Vobiz ──HTTPS──▶ server      TCP + TLS (rustls), hyper HTTP/1.1 and HTTP/2 by ALPN
//!                      │
//!                      ▼
//!                   pipeline::handle   one request, top to bottom
//!                      read      body into bytes, within --max-body and --body-timeout
//!                      verify    signature::verify → Verdict (with the explanation)
//!                      forward   forward::Upstream → the local server (a slow answer:
//!                                the request is recorded as pending meanwhile)
//!                      record    store: the whole exchange, committed (every exit path)
//!                      respond   the local server's answer, or our own 502/504/413/403
//!                                (a sender that left first: the record says so, sender_watch)
//!                      publish   ExchangeEvent → log lines (output), the UI
//! ```
//!
//! Modules, in the order a request meets them: [`cli`] and [`config`] (settings), [`tunnel`]
//! (start-up), [`tls`], [`server`], [`pipeline`], [`signature`], [`store`], [`forward`];
//! then [`output`] and [`report`] (what a person reads) and [`commands`] (offline subcommands).

pub mod checks;
pub mod cli;
pub mod commands;
pub mod config;
pub mod exchange;
pub mod export;
pub mod filter;
pub mod forward;
pub mod other_writers;
pub mod output;
pub mod pipeline;
pub mod relay;
pub mod replay;
pub mod replay_guard;
pub mod report;
pub mod sender_watch;
pub mod server;
pub mod shutdown;
pub mod signature;
pub mod slow_answers;
pub mod slow_commits;
pub mod store;
pub mod thread_priority;
pub mod tls;
pub mod trigger;
pub mod tui;
pub mod tunnel;
