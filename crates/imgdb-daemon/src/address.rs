//! The address file: while the daemon runs, `daemon.json` in the database
//! folder says where its API listens (and its token), so that the CLI can
//! send it the commands of a database the daemon holds. Readable by its
//! owner only; written atomically; removed on a clean exit. A file left by
//! a killed daemon names a process that is gone, which the client checks.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the database folder.
pub const ADDRESS_FILE: &str = "daemon.json";

/// What the address file holds (`schema/daemon.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The file's layout version (1).
    pub version: u32,
    /// The API's base URL, `http://IP:PORT`.
    pub url: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The bearer token, when one is required.
    pub token: Option<String>,
}

impl Address {
    /// The address of this process listening on `listen`.
    pub fn of_this_process(listen: SocketAddr, token: Option<String>) -> Address {
        Address {
            version: 1,
            url: format!("http://{listen}"),
            pid: std::process::id(),
            token,
        }
    }

    /// Writes it into `db` (owner-only, atomically: a reader never sees
    /// half a file).
    pub fn write(&self, db: &Path) -> std::io::Result<PathBuf> {
        let path = db.join(ADDRESS_FILE);
        let temporary = db.join(format!(".{ADDRESS_FILE}.{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        Ok(path)
    }

    /// The address left in `db`, if any and readable.
    pub fn read(db: &Path) -> Option<Address> {
        let bytes = std::fs::read(db.join(ADDRESS_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the process that wrote it is still alive.
    pub fn process_alive(&self) -> bool {
        Path::new("/proc").join(self.pid.to_string()).exists()
    }
}

/// Removes the address file if it is this process's own.
pub fn remove_own(db: &Path) {
    if Address::read(db).is_some_and(|a| a.pid == std::process::id()) {
        let _ = std::fs::remove_file(db.join(ADDRESS_FILE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_address_file_is_the_owners_only_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let address = Address::of_this_process("127.0.0.1:7000".parse().unwrap(), Some("t".into()));
        let path = address.write(dir.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Address::read(dir.path()), Some(address.clone()));
        assert!(address.process_alive());
        remove_own(dir.path());
        assert_eq!(Address::read(dir.path()), None);
    }
}
