//! Access-log lines leave the request path through a bounded queue per destination, written
//! by a thread of its own: a slow or stuck reader (a full pipe, a FIFO nobody opens, a slow
//! disk) costs dropped lines, counted in `isthmus_access_log_dropped_total{sink}`, never a
//! stalled worker.

use std::collections::HashMap;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};

use crate::config::access_log::Sink;

/// Lines a destination may have waiting before new ones are dropped.
pub const QUEUE: usize = 1024;

/// What a writer thread receives.
enum Msg {
    /// A formatted line.
    Line(Vec<u8>),
    /// Flush and acknowledge (shutdown waits for it).
    Flush(std::sync::mpsc::Sender<()>),
}

static WRITERS: OnceLock<Mutex<HashMap<Sink, SyncSender<Msg>>>> = OnceLock::new();

thread_local! {
    /// Each worker's copy of the senders it has used: the shared map (and its lock) is only
    /// consulted the first time a thread logs to a destination.
    static SENDERS: std::cell::RefCell<Vec<(Sink, SyncSender<Msg>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Queues `line` for `sink`, starting its writer on first use; drops it if the queue is full.
pub fn send(sink: &Sink, line: Vec<u8>) {
    let cached = SENDERS.with(|c| c.borrow().iter().find(|(s, _)| s == sink).map(|(_, tx)| tx.clone()));
    let tx = match cached {
        Some(tx) => tx,
        None => {
            let Some(tx) = shared_sender(sink) else { return };
            SENDERS.with(|c| c.borrow_mut().push((sink.clone(), tx.clone())));
            tx
        }
    };
    match tx.try_send(Msg::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            metrics::counter!("isthmus_access_log_dropped_total", "sink" => label(sink)).increment(1);
        }
    }
}

/// The sender of `sink`'s writer, started if this is the first line for it.
fn shared_sender(sink: &Sink) -> Option<SyncSender<Msg>> {
    let map = WRITERS.get_or_init(|| Mutex::new(HashMap::new()));
    let tx = {
        let mut m = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match m.get(sink) {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = sync_channel(QUEUE);
                let s = sink.clone();
                let spawned =
                    std::thread::Builder::new().name("isthmus-access-log".into()).spawn(move || write(&s, &rx));
                if spawned.is_err() {
                    return None;
                }
                m.insert(sink.clone(), tx.clone());
                tx
            }
        }
    };
    Some(tx)
}

/// Waits (up to `limit` in all) until every line queued so far is written and flushed: the
/// lines of the last connections must not be lost when the process exits after a drain.
pub fn flush(limit: std::time::Duration) {
    let Some(map) = WRITERS.get() else { return };
    let senders: Vec<SyncSender<Msg>> =
        map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect();
    let deadline = crate::clock::now() + limit;
    for tx in senders {
        let (ack, done) = std::sync::mpsc::channel();
        // The queue may be full: retry until there is room or the time is up.
        let mut msg = Msg::Flush(ack);
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if crate::clock::now() < deadline => {
                    msg = m;
                    std::thread::yield_now();
                }
                Err(_) => return,
            }
        }
        let left = deadline.saturating_duration_since(crate::clock::now());
        let _ = done.recv_timeout(left);
    }
}

fn label(sink: &Sink) -> String {
    match sink {
        Sink::Stdout => "stdout".into(),
        Sink::Stderr => "stderr".into(),
        Sink::File(p) => p.clone(),
    }
}

/// The writer thread: opens the destination (which may block, e.g. a FIFO without a reader),
/// then writes lines as they come, flushing whenever the queue is empty.
fn write(sink: &Sink, rx: &Receiver<Msg>) {
    let out: Box<dyn Write> = match sink {
        Sink::Stdout => Box::new(std::io::stdout()),
        Sink::Stderr => Box::new(std::io::stderr()),
        Sink::File(p) => match std::fs::OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                tracing::warn!(path = %p, error = %e, "cannot open the access log; its lines are dropped");
                return;
            }
        },
    };
    let mut out = std::io::BufWriter::new(out);
    let handle = |m: Msg, out: &mut std::io::BufWriter<Box<dyn Write>>| match m {
        Msg::Line(l) => {
            let _ = out.write_all(&l);
        }
        Msg::Flush(ack) => {
            let _ = out.flush();
            let _ = ack.send(());
        }
    };
    while let Ok(m) = rx.recv() {
        handle(m, &mut out);
        while let Ok(more) = rx.try_recv() {
            handle(more, &mut out);
        }
        let _ = out.flush();
    }
}
