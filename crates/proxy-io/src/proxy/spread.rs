//! Clients spread over the serving threads by how many connections each serves, rather than
//! by the kernel's hash alone: a thread hands a client it accepted to one serving fewer.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// How many connections each thread serves, and the way to hand one a connection: a thread
/// that accepts a client while another serves fewer gives it to that one, as HAProxy's
/// threads do, so that the kernel's spreading of clients over the threads' sockets (a hash,
/// not a count) does not leave one thread with the heavy share.
pub(super) struct Spread {
    load: Vec<std::sync::atomic::AtomicUsize>,
    inbox: Vec<mpsc::UnboundedSender<Handed>>,
}

/// A client connection on its way to another thread (out of any reactor meanwhile).
pub(super) struct Handed {
    pub(super) stream: std::net::TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) permit: Option<OwnedSemaphorePermit>,
    /// Counted for the thread it goes to from the moment it was handed over.
    pub(super) load: Load,
}

impl Spread {
    /// For `n` threads, with each one's inbox; nothing when there is only one.
    pub(super) fn new(n: usize) -> (Option<Arc<Self>>, Vec<mpsc::UnboundedReceiver<Handed>>) {
        if n < 2 {
            return (None, Vec::new());
        }
        let (inbox, receivers) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        let load = (0..n).map(|_| std::sync::atomic::AtomicUsize::new(0)).collect();
        (Some(Arc::new(Self { load, inbox })), receivers)
    }

    /// Give `stream`, accepted by thread `me`, to the thread serving fewest connections if
    /// that one serves at least two fewer than `me`; otherwise (or if it cannot be moved)
    /// it is `me`'s to serve, and comes back.
    pub(super) fn hand_over(self: &Arc<Self>, me: usize, stream: TcpStream, peer: SocketAddr, permit: Option<OwnedSemaphorePermit>) -> Option<(TcpStream, Option<OwnedSemaphorePermit>)> {
        use std::sync::atomic::Ordering::Relaxed;
        let mine = self.load[me].load(Relaxed);
        let (least, fewest) = self.load.iter().map(|l| l.load(Relaxed)).enumerate().min_by_key(|&(_, l)| l)?;
        if least == me || fewest + 2 > mine {
            return Some((stream, permit));
        }
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(client = %peer, error = %e, "an accepted connection could not be handed over");
                return None;
            }
        };
        // Counted for its thread at once, so that the next accepts here see it.
        let handed = Handed { stream, peer, permit, load: Load::count(self, least) };
        // A thread that has stopped drops what it was handed, as it would its own.
        drop(self.inbox[least].send(handed));
        None
    }
}

/// One connection counted as thread `me`'s while it lives.
pub(super) struct Load(Arc<Spread>, usize);

impl Load {
    pub(super) fn count(spread: &Arc<Spread>, me: usize) -> Self {
        spread.load[me].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(Arc::clone(spread), me)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.load[self.1].fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
