//! Deferred writes. The boot path must answer in microseconds, so events and "last seen"
//! updates go into a bounded queue that one task drains in batches, one transaction per
//! batch. A full queue makes the request wait for room (bounded memory, and the record of
//! a boot storm is kept); only a store stuck for longer than `MAX_WAIT` makes it drop the
//! item and count it in `bootplane_events_dropped_total`. State changes never go through
//! here: they are written synchronously, with their event, by the store.

use bootplane_store::{BatchItem, Store};
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

const QUEUE: usize = 16_384;
const BATCH: usize = 2048;
/// Longest a request waits for room in a full queue before its event is dropped.
const MAX_WAIT: Duration = Duration::from_millis(250);

enum Msg {
    Item(BatchItem),
    Flush(oneshot::Sender<()>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootplane_store::NewEvent;

    #[test]
    fn only_the_last_sighting_per_machine_is_kept() {
        let seen = |m: &str, arch: &str| BatchItem::Seen {
            machine: m.into(),
            observed: bootplane_core::Observed { arch: Some(arch.into()), ..Default::default() },
        };
        let mut b = vec![
            seen("a", "1"),
            BatchItem::Event(NewEvent::new(Some("a"), "boot.script", None, serde_json::json!(1))),
            seen("b", "1"),
            seen("a", "2"),
            BatchItem::Event(NewEvent::new(Some("a"), "boot.script", None, serde_json::json!(2))),
        ];
        coalesce_seen(&mut b);
        assert_eq!(b.len(), 4, "events are never coalesced");
        assert!(matches!(&b[2], BatchItem::Seen { machine, observed } if machine == "a" && observed.arch.as_deref() == Some("2")));
    }
}

#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Msg>,
    dropped: Counter,
    /// Woken after each batch lands, so live event streams need not wait for their poll.
    pub written: Arc<Notify>,
}

impl EventSink {
    pub fn start(store: Arc<dyn Store>, dropped: Counter) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        let written = Arc::new(Notify::new());
        let notify = written.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut waiters = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Item(i) => batch.push(i),
                        Msg::Flush(w) => waiters.push(w),
                    }
                    if batch.len() < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    coalesce_seen(&mut batch);
                    if let Err(e) = store.write_batch(std::mem::take(&mut batch)).await {
                        tracing::warn!("could not write {BATCH} or fewer events: {e}");
                    }
                    notify.notify_waiters();
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        });
        EventSink { tx, dropped, written }
    }

    /// Queues `item`. When the queue is full the caller waits (this is what slows a boot
    /// storm down to the store's pace instead of losing its record); only if the store
    /// makes no room within [`MAX_WAIT`] is the item dropped and counted.
    pub async fn push(&self, item: BatchItem) {
        match self.tx.try_send(Msg::Item(item)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(m)) => {
                if tokio::time::timeout(MAX_WAIT, self.tx.send(m)).await.map_or(true, |r| r.is_err()) {
                    self.dropped.inc();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.dropped.inc();
            }
        }
    }

    /// Queues `item` from synchronous code; drops (and counts) it when the queue is full.
    pub fn try_push(&self, item: BatchItem) {
        if self.tx.try_send(Msg::Item(item)).is_err() {
            self.dropped.inc();
        }
    }

    /// Waits until everything pushed so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Keeps only the last "seen" update per machine in a batch: under load the same machine
/// can appear many times, and only the latest observation matters.
fn coalesce_seen(batch: &mut Vec<BatchItem>) {
    let mut seen = std::collections::HashSet::new();
    let mut keep = vec![true; batch.len()];
    for (i, item) in batch.iter().enumerate().rev() {
        if let Some(k) = machine_key(item) {
            if !seen.insert(k) {
                keep[i] = false;
            }
        }
    }
    let mut flags = keep.into_iter();
    batch.retain(|_| flags.next().unwrap_or(true));
}

fn machine_key(item: &BatchItem) -> Option<String> {
    match item {
        BatchItem::Seen { machine, .. } => Some(machine.clone()),
        BatchItem::Discovered { observed, .. } => bootplane_core::model::discovered_name(observed),
        BatchItem::Event(_) => None,
    }
}

/// Keeps the event log and the discovered machines within their caps.
pub fn start_pruner(store: Arc<dyn Store>, events_retained: u64, audit_days: u32, max_discovered: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            match store.prune(events_retained, audit_days, max_discovered).await {
                Ok(r) if r.events_deleted + r.discovered_deleted > 0 => {
                    tracing::debug!(events = r.events_deleted, discovered = r.discovered_deleted, "pruned")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("prune failed: {e}"),
            }
        }
    });
}
