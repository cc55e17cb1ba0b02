//! Runs an iterator on a background thread, a bounded number of items ahead, so that the
//! consumer (a training step) rarely waits. The items and their order are exactly those of
//! the iterator; only the timing changes.
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

type BoxIter<T> = Box<dyn Iterator<Item = T> + Send>;

pub struct Prefetch<T> {
    mode: Mode<T>,
    remaining: Option<usize>,
}

enum Mode<T> {
    /// depth 0: computed on the consumer's thread.
    Inline(BoxIter<T>),
    Thread {
        rx: Option<Receiver<T>>,
        handle: Option<JoinHandle<()>>,
    },
}

impl<T: Send + 'static> Prefetch<T> {
    /// `depth` items are computed ahead (0: no thread); `len` is the number of items if known.
    pub(crate) fn new(iter: BoxIter<T>, depth: usize, len: Option<usize>) -> Self {
        let mode = if depth == 0 {
            Mode::Inline(iter)
        } else {
            // The channel holds depth - 1 items; the thread holds one more while blocked.
            let (tx, rx) = sync_channel(depth - 1);
            // The iterator is handed over after the spawn succeeded, so that if the system
            // cannot start a thread it is still here to run inline.
            let (give, take) = sync_channel::<BoxIter<T>>(1);
            let spawned = std::thread::Builder::new()
                .name("data-prefetch".into())
                .spawn(move || {
                    let Ok(iter) = take.recv() else { return };
                    for item in iter {
                        if tx.send(item).is_err() {
                            break; // the consumer is gone
                        }
                    }
                });
            match spawned {
                Ok(handle) => {
                    // Cannot fail: the thread is alive and the slot is empty.
                    let _ = give.send(iter);
                    Mode::Thread {
                        rx: Some(rx),
                        handle: Some(handle),
                    }
                }
                Err(_) => Mode::Inline(iter),
            }
        };
        Prefetch {
            mode,
            remaining: len,
        }
    }
}

impl<T> Iterator for Prefetch<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let item = match &mut self.mode {
            Mode::Inline(iter) => iter.next(),
            Mode::Thread { rx, handle } => match rx.as_ref().and_then(|r| r.recv().ok()) {
                Some(item) => Some(item),
                None => {
                    // The producer finished or panicked: a panic is a bug, pass it on.
                    rx.take();
                    if let Some(Err(panic)) = handle.take().map(|h| h.join()) {
                        std::panic::resume_unwind(panic);
                    }
                    None
                }
            },
        };
        if item.is_some() {
            if let Some(r) = &mut self.remaining {
                *r = r.saturating_sub(1);
            }
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.remaining {
            Some(r) => (r, Some(r)),
            None => (usize::MAX, None),
        }
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        if let Mode::Thread { rx, handle } = &mut self.mode {
            // Closing the channel first unblocks a producer waiting to send.
            rx.take();
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
