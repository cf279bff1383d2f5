//! The server writer's fsync, on a thread of its own.
//!
//! With `synchronous=FULL`, SQLite fsyncs the WAL inside every `COMMIT`, and
//! the writer thread waits for the disk before it can start the next batch.
//! During a subscribe load it was on the CPU 61 % of the time; most of the
//! rest it waited for that fsync (`/proc/PID/task/*/stat`, BENCHMARKS.md
//! "End to end"). So the server's writer connection runs
//! `synchronous=NORMAL`: `COMMIT` writes the batch's frames into the WAL
//! file (the page cache) and returns. The writer hands the batch's
//! completions (its answers, the outbox's wake-up) to this thread and starts
//! the next batch. This thread calls `fdatasync` on the WAL and only then runs
//! the completions. One `fdatasync` covers every batch that committed before
//! it began, so under load each call releases several batches.
//!
//! Why this is as durable as `FULL`:
//!
//! | step | what is on disk if the power goes |
//! |---|---|
//! | `COMMIT` returned, no `fdatasync` yet | maybe not this batch; no one was answered |
//! | `fdatasync` of the WAL returned | every frame written before it, with the file's size |
//! | completions run: answers, wake-ups | the batch, so an answer is never a lie |
//!
//! - Batches complete in commit order (one queue, one thread). A later
//!   batch is never answered before an earlier one is on disk.
//! - The checkpoints stay SQLite's. With `NORMAL`, SQLite syncs the WAL
//!   before it copies frames into the database file, and syncs the database
//!   file after. The WAL starts again from its beginning only after a full
//!   checkpoint. So a power cut can lose only batches that no one has been
//!   answered for, and it leaves the database consistent: SQLite's own
//!   promise for `NORMAL`.
//! - The descriptor is this thread's own, opened on the WAL's path. `fsync`
//!   acts on the file, whichever descriptor names it. SQLite keeps no POSIX
//!   locks on the WAL file (only on the database and `-shm`), so opening and
//!   closing it here cannot drop a lock of SQLite's. The WAL file is not
//!   deleted while the writer's connection is open.
//! - A failed `fdatasync` stops the server. After a failed fsync, Linux can
//!   mark the pages clean, so a later fsync succeeds without the data being
//!   on disk (PostgreSQL panics for the same reason). A restart runs SQLite's
//!   recovery from what the disk holds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::writer::Completion;

/// The thread that syncs the WAL and then completes the batches behind it.
pub struct WalSyncer {
    batches: Option<mpsc::Sender<Vec<Completion>>>,
    thread: Option<JoinHandle<()>>,
}

impl WalSyncer {
    /// Starts the thread for the WAL file at `wal`.
    pub fn spawn(wal: PathBuf) -> WalSyncer {
        let (batches, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("listgate-sync".into())
            .spawn(move || run(wal, queue))
            .expect("spawn WAL sync thread");
        WalSyncer { batches: Some(batches), thread: Some(thread) }
    }

    /// Runs `completions` once everything committed so far is on disk.
    pub fn complete_after_sync(&self, completions: Vec<Completion>) {
        if let Some(batches) = &self.batches {
            // The thread lives as long as this handle; if it died, dropping
            // the completions drops their reply channels: callers get an error.
            let _ = batches.send(completions);
        }
    }
}

impl Drop for WalSyncer {
    /// Completes the batches still queued, then stops the thread.
    fn drop(&mut self) {
        drop(self.batches.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(wal: PathBuf, queue: mpsc::Receiver<Vec<Completion>>) {
    let mut file: Option<File> = None;
    while let Ok(first) = queue.recv() {
        let mut ready = vec![first];
        ready.extend(queue.try_iter());
        if let Err(e) = sync(&wal, &mut file) {
            tracing::error!(
                error = %e,
                wal = %wal.display(),
                "cannot sync the database's WAL to disk; stopping, so that no answer claims a write the disk may not hold"
            );
            std::process::exit(1);
        }
        for complete in ready.into_iter().flatten() {
            complete(None);
        }
    }
}

/// `fdatasync` of the WAL, opening it on first use.
fn sync(wal: &Path, file: &mut Option<File>) -> std::io::Result<()> {
    let file = match file {
        Some(file) => file,
        None => file.insert(File::options().read(true).write(true).open(wal)?),
    };
    file.sync_data()
}
