//! One writer per report: a run that writes `-o FILE` holds an exclusive lock on `FILE.lock`
//! beside it for as long as it runs, taken before the report is created, truncated or resumed.
//!
//! A cron job that outlives its interval starts a second run on the same report; without the
//! lock both would write (the second truncating the first's records, or both appending under
//! `--resume`). The second run exits at once with `EX_TEMPFAIL` (75) and one line naming the
//! holder, or waits for it with `--wait-lock`. The lock is the kernel's (`flock`): it goes
//! away with its process, even after `kill -9`, so a stale lock file never blocks a run. The
//! file is left in place: removing it would let a third run lock a new file while the second
//! still holds the old one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Held for the life of the run; dropping it releases the lock.
#[derive(Debug)]
pub struct ReportLock {
    _file: File,
    path: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it (its pid, when it wrote one).
    Busy { lock: PathBuf, holder: Option<u32> },
    /// The lock file could not be opened or locked.
    Io {
        lock: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy { lock, holder } => write!(
                f,
                "another run{} is writing this report (lock '{}'); add --wait-lock to wait for it, or write to another -o",
                holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                lock.display()
            ),
            LockError::Io { lock, error } => write!(
                f,
                "cannot lock '{}': {error}; check that the report's folder exists and is writable",
                lock.display()
            ),
        }
    }
}

impl std::error::Error for LockError {}

/// The lock file of a report: `out.jsonl` → `out.jsonl.lock`, in the same folder.
pub fn lock_path(report: &Path) -> PathBuf {
    let mut name = report.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    report.with_file_name(name)
}

impl ReportLock {
    /// Takes the lock of `report`. With `wait`, blocks until the holder is gone, calling
    /// `on_wait` once (with the holder's pid) before it blocks; without, fails at once.
    pub fn acquire(
        report: &Path,
        wait: bool,
        on_wait: impl FnOnce(Option<u32>),
    ) -> Result<ReportLock, LockError> {
        let path = lock_path(report);
        let io = |error| LockError::Io {
            lock: path.clone(),
            error,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_pid(&mut file);
                if !wait {
                    return Err(LockError::Busy { lock: path, holder });
                }
                on_wait(holder);
                file.lock().map_err(io)?;
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Ours now: say who holds it, for the message a second run prints.
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(ReportLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_report() {
        assert_eq!(
            lock_path(Path::new("/tmp/x/run.jsonl")),
            PathBuf::from("/tmp/x/run.jsonl.lock")
        );
        assert_eq!(lock_path(Path::new("out")), PathBuf::from("out.lock"));
    }

    #[test]
    fn a_second_holder_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("run.jsonl");
        let first = ReportLock::acquire(&report, false, |_| {}).unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts as one in another process would.
        match ReportLock::acquire(&report, false, |_| {}) {
            Err(LockError::Busy { holder, lock }) => {
                assert_eq!(holder, Some(std::process::id()));
                assert_eq!(lock, first.path());
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        let mut waited = false;
        let again = ReportLock::acquire(&report, true, |_| waited = true).unwrap();
        assert!(!waited, "a free lock is taken without waiting");
        drop(again);
    }

    #[test]
    fn a_waiting_run_gets_the_lock_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("run.jsonl");
        let first = ReportLock::acquire(&report, false, |_| {}).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let r = report.clone();
        let waiter = std::thread::spawn(move || {
            ReportLock::acquire(&r, true, |holder| tx.send(holder).unwrap()).map(|_| ())
        });
        // The waiter has seen the holder before the holder lets go.
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap(),
            Some(std::process::id())
        );
        drop(first);
        waiter.join().unwrap().unwrap();
    }
}
