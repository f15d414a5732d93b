//! Closing a connection without destroying the answer it was just sent.
//!
//! A socket closed while bytes it has not read are waiting (the rest of a body answered 413,
//! a slow sender's latest drip, the request behind a plain-HTTP hint) does not end with an
//! orderly close: the kernel sends a reset. A sender still writing then gets "connection
//! reset by peer" on its next write, and curl reports that instead of the answer it was sent.
//! So a connection is closed the way nginx's `lingering_close` does it: our side shut down
//! (the sender reads the answer, then its end), then, if the sender was caught still
//! sending, what it sends is read and thrown away until it closes too, for at most
//! [`LINGER_FOR`] and [`LINGER_BYTES`] (an endless body is not read forever). A sender that
//! sent nothing more costs no wait: with nothing unread, the close is an orderly one.
//!
//! TLS and hyper own a connection's socket and drop it when they are done, so [`Closing`]
//! keeps a second descriptor of the same socket, taken first: the socket closes only when
//! that one does.

use std::io::{ErrorKind, Read};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long what a sender still sends after our answer is read and discarded.
pub const LINGER_FOR: Duration = Duration::from_secs(2);

/// How much of what a sender still sends is read and discarded, at most.
pub const LINGER_BYTES: usize = 4 << 20;

/// Reads done at once, before the rest is awaited (which lets other tasks run).
const IMMEDIATE_READS: usize = 16;

/// A connection's socket, to be closed gently once nothing else uses it.
#[derive(Debug)]
pub struct Closing(std::net::TcpStream);

impl Closing {
    /// A second descriptor of `tcp`'s socket. `None` when none can be had (out of file
    /// descriptors): the connection then closes as it would have without this.
    pub fn of(tcp: &TcpStream) -> Option<Closing> {
        let fd = tcp.as_fd().try_clone_to_owned().ok()?;
        Some(Closing(std::net::TcpStream::from(fd)))
    }

    /// A socket nothing else uses.
    pub fn owned(tcp: TcpStream) -> Option<Closing> {
        tcp.into_std().ok().map(Closing)
    }

    /// Shuts our side down and, if the sender is still sending, reads what it sends until
    /// it closes its side, [`LINGER_FOR`] passes, [`LINGER_BYTES`] were read or `stop` turns
    /// true. `patient`: the sender may still be sending even if nothing is waiting now (its
    /// body was not all read), so it is waited for in any case. Call it once TLS and hyper
    /// have let go.
    pub async fn close(self, stop: Option<watch::Receiver<bool>>, patient: bool) {
        let socket = self.0;
        if socket.shutdown(Shutdown::Write).is_err() || socket.set_nonblocking(true).is_err() {
            return; // reset or gone already
        }
        // What is here already is read at once: usually nothing (an orderly close follows)
        // or the sender's end (it closed first). Only a sender caught sending, or one we must
        // be patient with, is waited for.
        let mut scratch = [0u8; 4096];
        let mut left = LINGER_BYTES;
        for _ in 0..IMMEDIATE_READS {
            match (&socket).read(&mut scratch) {
                Ok(0) => return,
                Ok(read) => {
                    left = left.saturating_sub(read);
                    if left == 0 {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock && (patient || left < LINGER_BYTES) => {
                    break
                }
                Err(_) => return,
            }
        }
        let Ok(mut stream) = TcpStream::from_std(socket) else {
            return;
        };
        let drain = async {
            while let Ok(read @ 1..) = stream.read(&mut scratch).await {
                left = left.saturating_sub(read);
                if left == 0 {
                    break;
                }
            }
        };
        let stopped = async {
            match stop {
                Some(mut stop) => {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                }
                None => std::future::pending().await,
            }
        };
        let _ = tokio::time::timeout(LINGER_FOR, async {
            tokio::select! {
                () = drain => {}
                () = stopped => {}
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// The server answers before reading what the client sent, and lets go of its socket.
    async fn answer_unread(server: TcpStream) -> Option<Closing> {
        let closing = Closing::of(&server);
        let mut server = server;
        server.write_all(b"answer").await.unwrap();
        drop(server);
        closing
    }

    #[tokio::test]
    async fn a_sender_still_writing_reads_the_answer_instead_of_a_reset() {
        let (mut client, server) = pair().await;
        client.write_all(&[b'x'; 1000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // unread on the server
        let closing = answer_unread(server).await.expect("a second descriptor");
        let lingering = tokio::spawn(closing.close(None, false));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Without the linger this write, or the read after it, fails with a reset.
        client.write_all(&[b'y'; 64 * 1024]).await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer");
        drop(client);
        tokio::time::timeout(Duration::from_secs(1), lingering)
            .await
            .expect("the linger ends when the sender closes")
            .unwrap();
    }

    #[tokio::test]
    async fn a_sender_that_closed_first_costs_no_wait() {
        let (client, server) = pair().await;
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let closing = answer_unread(server).await.unwrap();
        let started = Instant::now();
        closing.close(None, false).await;
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn an_endless_sender_is_let_go_after_the_byte_bound() {
        let (mut client, server) = pair().await;
        let lingering = tokio::spawn(Closing::owned(server).unwrap().close(None, false));
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        let writing = async {
            while client.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
        };
        tokio::time::timeout(LINGER_FOR, writing)
            .await
            .expect("a reset once the bound was read");
        // What was read, plus what the two sockets' buffers held (a few MiB at most).
        assert!((LINGER_BYTES..32 << 20).contains(&sent), "{sent}");
        lingering.await.unwrap();
    }

    #[tokio::test]
    async fn a_sender_that_sends_nothing_more_is_closed_at_once() {
        let (mut client, server) = pair().await;
        let started = Instant::now();
        Closing::owned(server).unwrap().close(None, false).await;
        assert!(started.elapsed() < Duration::from_millis(500));
        let mut end = Vec::new();
        client.read_to_end(&mut end).await.expect("an orderly end");
        assert!(end.is_empty());
    }

    /// A sender whose body was not all read pauses just as we close, then writes on.
    #[tokio::test]
    async fn a_patient_close_waits_for_a_sender_that_paused() {
        let (mut client, server) = pair().await;
        let lingering = tokio::spawn(Closing::owned(server).unwrap().close(None, true));
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(&[b'y'; 64 * 1024]).await.unwrap();
        let mut end = Vec::new();
        client
            .read_to_end(&mut end)
            .await
            .expect("an orderly end, not a reset");
        drop(client);
        tokio::time::timeout(Duration::from_secs(1), lingering)
            .await
            .expect("the linger ends when the sender closes")
            .unwrap();
    }

    #[tokio::test]
    async fn a_sender_that_never_closes_is_let_go_at_the_bound_or_at_stop() {
        let (mut client, server) = pair().await;
        client.write_all(b"still sending").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let closing = Closing::owned(server).unwrap();
        let started = Instant::now();
        tokio::time::timeout(LINGER_FOR * 2, closing.close(None, false))
            .await
            .expect("bounded");
        assert!(started.elapsed() >= LINGER_FOR - Duration::from_millis(50));

        let (mut client, server) = pair().await;
        client.write_all(b"still sending").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (stop, stopping) = watch::channel(false);
        let lingering = tokio::spawn(Closing::owned(server).unwrap().close(Some(stopping), false));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        stop.send(true).unwrap();
        lingering.await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
