//! A [`Storage`] that fails or holds chosen operations, over the real one:
//! the fault-injection seam of `tests/faults.rs` and `tests/maintenance.rs`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use imgdb::{CommitStage, LocalStorage, Mmap, Storage, StorageFile};

/// The kinds of operation a fault can hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A `write` call on a file.
    Write,
    /// An fsync of a file or a directory.
    Sync,
    /// A rename.
    Rename,
    /// A memory mapping (a compact index's `vectors.f32`).
    Map,
    /// A store commit, at this stage.
    Commit(CommitStage),
}

/// What to fail.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// The `n`th (from 0) operation of this kind from now fails, once.
    Nth(Kind, usize),
    /// Every write fails with a full disk once this many more bytes are written.
    DiskFullAfter(u64),
}

#[derive(Default)]
struct Plan {
    fault: Option<Fault>,
    /// Operations of the fault's kind seen since it was armed, or bytes written.
    seen: u64,
    /// A file name whose creation waits: (reached, release).
    hold: Option<(String, Sender<()>, Receiver<()>)>,
}

/// The fault-injecting storage. Clones share one plan.
#[derive(Clone, Default)]
pub struct Faulty {
    plan: Arc<Mutex<Plan>>,
}

/// Holds the creation of one file until released (see [`Faulty::hold`]).
pub struct Gate {
    reached: Receiver<()>,
    release: Sender<()>,
}

impl Gate {
    /// Waits until the held file's creation was reached.
    pub fn wait_reached(&self) {
        self.reached.recv().expect("the held operation was reached");
    }

    /// Lets the held creation go on.
    pub fn release(&self) {
        self.release.send(()).expect("the held operation waits");
    }
}

impl Faulty {
    pub fn new() -> Faulty {
        Faulty::default()
    }

    /// As the database takes it.
    pub fn shared(&self) -> Arc<dyn Storage> {
        Arc::new(self.clone())
    }

    /// Arms `fault`, replacing any other.
    pub fn arm(&self, fault: Fault) {
        let mut plan = self.plan.lock().unwrap();
        plan.fault = Some(fault);
        plan.seen = 0;
    }

    /// Disarms.
    pub fn clear(&self) {
        self.plan.lock().unwrap().fault = None;
    }

    /// Makes the next creation of a file named `name` wait for the gate.
    pub fn hold(&self, name: &str) -> Gate {
        let (reached_tx, reached) = crossbeam_channel::bounded(1);
        let (release, release_rx) = crossbeam_channel::bounded(1);
        self.plan.lock().unwrap().hold = Some((name.to_string(), reached_tx, release_rx));
        Gate { reached, release }
    }

    /// Fails this operation if the plan says so.
    fn check(&self, kind: Kind) -> io::Result<()> {
        let mut plan = self.plan.lock().unwrap();
        if let Some(Fault::Nth(armed, n)) = plan.fault
            && armed == kind
        {
            let seen = plan.seen;
            plan.seen += 1;
            if seen == n as u64 {
                plan.fault = None;
                return Err(io::Error::other(format!("injected {kind:?} failure")));
            }
        }
        Ok(())
    }

    /// Accounts for `len` bytes about to be written.
    fn check_write(&self, len: usize) -> io::Result<()> {
        self.check(Kind::Write)?;
        let mut plan = self.plan.lock().unwrap();
        if let Some(Fault::DiskFullAfter(limit)) = plan.fault {
            if plan.seen + len as u64 > limit {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            plan.seen += len as u64;
        }
        Ok(())
    }
}

struct FaultyFile {
    storage: Faulty,
    file: Box<dyn StorageFile>,
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.storage.check_write(buf.len())?;
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl StorageFile for FaultyFile {
    fn sync(&mut self) -> io::Result<()> {
        self.storage.check(Kind::Sync)?;
        self.file.sync()
    }
}

impl Storage for Faulty {
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let held = {
            let mut plan = self.plan.lock().unwrap();
            let name = path.file_name().unwrap().to_string_lossy();
            match &plan.hold {
                Some((held, _, _)) if *held == name => plan.hold.take(),
                _ => None,
            }
        };
        if let Some((_, reached, release)) = held {
            reached.send(()).unwrap();
            release.recv().unwrap();
        }
        Ok(Box::new(FaultyFile {
            storage: self.clone(),
            file: LocalStorage.create(path)?,
        }))
    }
    fn open(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        LocalStorage.open(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check(Kind::Sync)?;
        LocalStorage.sync_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(Kind::Rename)?;
        LocalStorage.rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        LocalStorage.create_dir_all(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        LocalStorage.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        LocalStorage.remove_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        LocalStorage.list(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        LocalStorage.exists(path)
    }
    fn available_space(&self, path: &Path) -> io::Result<u64> {
        LocalStorage.available_space(path)
    }
    fn check_commit(&self, stage: CommitStage) -> io::Result<()> {
        self.check(Kind::Commit(stage))
    }
    fn map(&self, path: &Path) -> io::Result<Mmap> {
        self.check(Kind::Map)?;
        LocalStorage.map(path)
    }
}
