//! Whether the sender of a request was still there to get its answer.
//!
//! hyper drops a request's future when the sender closes the connection or resets the stream
//! (a Vobiz timeout, `curl --max-time`, a relay whose public sender left). The pipeline's
//! work goes on in a task of its own and records the exchange anyway; this watch lets that
//! record say the answer reached nobody ([`Flag::SenderGone`]), whether the sender left while
//! the local server thought or during the commit of the answer.
//!
//! [`Flag::SenderGone`]: crate::exchange::Flag::SenderGone

use std::sync::{Arc, Mutex};

use crate::exchange::{now_micros, Exchange, WhoLeft};

/// Shared by the request's future (which holds a [`Departure`]) and its pipeline task.
#[derive(Debug)]
pub struct SenderWatch {
    /// Who is on the other end: the sender, or the relay's stream for a relayed callback.
    who: WhoLeft,
    watch: Mutex<Watch>,
}

#[derive(Debug, Default)]
struct Watch {
    /// When the sender left (µs since the epoch).
    gone_us: Option<i64>,
    /// The relay answers the sender itself (its `--forward-timeout` passed): the stream it
    /// closes is not a departure, and the record says what the sender got.
    relay_answered: bool,
    /// The committed record, until the answer is handed to hyper: if the sender leaves in
    /// that moment, the record is written again with the flag.
    recorded: Option<Arc<Exchange>>,
}

impl SenderWatch {
    pub fn new(who: WhoLeft) -> Arc<SenderWatch> {
        Arc::new(SenderWatch {
            who,
            watch: Mutex::default(),
        })
    }

    /// Who leaves when the request is closed before its answer.
    pub fn who(&self) -> WhoLeft {
        self.who
    }

    /// When the sender left, if it has.
    pub fn gone_at(&self) -> Option<i64> {
        let watch = self.lock();
        watch.gone_us.filter(|_| !watch.relay_answered)
    }

    /// The relay gave up waiting and answered its sender itself: from now on, the closing of
    /// its stream is expected and flags nothing.
    pub fn relay_answered(&self) {
        let mut watch = self.lock();
        watch.relay_answered = true;
        watch.recorded = None;
    }

    /// The record was committed. `Some(when)` if the sender left meanwhile (the caller flags
    /// the record and writes it again); otherwise the watch keeps it until [`Departure`]
    /// knows whether the answer was handed over.
    pub fn recorded(&self, exchange: &Arc<Exchange>) -> Option<i64> {
        let mut watch = self.lock();
        if watch.relay_answered {
            return None;
        }
        if watch.gone_us.is_none() {
            watch.recorded = Some(exchange.clone());
        }
        watch.gone_us
    }

    /// The sender left: returns the committed record if there is one to write again.
    fn left(&self) -> Option<Arc<Exchange>> {
        let mut watch = self.lock();
        watch.gone_us.get_or_insert_with(now_micros);
        watch.recorded.take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watch> {
        // The lock only guards plain assignments: a poisoned one still holds a whole value.
        self.watch.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Held by the request's future: dropped before [`Departure::answered`], the sender left.
pub struct Departure<F: FnOnce(Arc<Exchange>, i64)> {
    watch: Arc<SenderWatch>,
    /// Writes a committed record again, flagged, when the sender left after the commit.
    rerecord: Option<F>,
}

impl<F: FnOnce(Arc<Exchange>, i64)> Departure<F> {
    pub fn new(watch: Arc<SenderWatch>, rerecord: F) -> Self {
        Departure {
            watch,
            rerecord: Some(rerecord),
        }
    }

    /// The answer is handed to hyper: what happens to it now is the connection's business.
    pub fn answered(mut self) {
        self.rerecord = None;
    }
}

impl<F: FnOnce(Arc<Exchange>, i64)> Drop for Departure<F> {
    fn drop(&mut self) {
        let Some(rerecord) = self.rerecord.take() else {
            return;
        };
        if let Some(recorded) = self.watch.left() {
            let gone_us = self.watch.gone_at().unwrap_or_else(now_micros);
            rerecord(recorded, gone_us);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Flag;

    fn exchange() -> Arc<Exchange> {
        let verdict = crate::signature::Verdict::bare(crate::signature::VerdictStatus::Unsigned);
        Arc::new(Exchange::received(Default::default(), verdict, 0))
    }

    #[test]
    fn a_sender_that_stays_is_never_flagged() {
        let watch = SenderWatch::new(WhoLeft::Sender);
        let departure = Departure::new(watch.clone(), |_, _| panic!("not written again"));
        assert_eq!(watch.recorded(&exchange()), None);
        departure.answered();
        assert_eq!(watch.gone_at(), None);
    }

    #[test]
    fn leaving_before_the_commit_is_seen_by_the_pipeline() {
        let watch = SenderWatch::new(WhoLeft::Sender);
        let departure = Departure::new(watch.clone(), |_, _| panic!("nothing recorded yet"));
        drop(departure);
        assert!(watch.gone_at().is_some());
        assert!(
            watch.recorded(&exchange()).is_some(),
            "the commit learns it"
        );
    }

    #[test]
    fn leaving_after_the_commit_writes_the_record_again() {
        let watch = SenderWatch::new(WhoLeft::Sender);
        let written = Arc::new(Mutex::new(None));
        let sink = written.clone();
        let departure = Departure::new(watch.clone(), move |mut record, gone_us| {
            Arc::make_mut(&mut record).sender_gone(gone_us, WhoLeft::Sender);
            *sink.lock().unwrap() = Some(record);
        });
        assert_eq!(watch.recorded(&exchange()), None);
        drop(departure);
        let record = written.lock().unwrap().take().expect("written again");
        assert!(record.has_flag(Flag::SenderGone));
    }
}
