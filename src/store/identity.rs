//! Whether the store's path still names the file the store writes into.
//!
//! An open SQLite file that is deleted (or moved, or replaced) goes on accepting writes: the
//! commits succeed into a file nobody can open any more, and `list` then finds no store. The
//! writer and the checkpointer look at the path between batches ([`FileWatch::moved`]) and,
//! when it names another file or none, start a new store there and say so. The checkpointer
//! looks every 0.1 s and wakes an idle writer, so a deletion does not wait for a callback.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the path is looked at (one `stat`): writes into a deleted file are lost for at
/// most this long.
const EVERY: Duration = Duration::from_millis(100);

/// Device and inode: which file a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileId {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }

    #[cfg(not(unix))]
    fn of(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|_| FileId {
            device: 0,
            inode: 0,
        })
    }
}

/// The file a store was opened on, and when to look again.
pub(super) struct FileWatch {
    path: PathBuf,
    opened: Option<FileId>,
    next_look: Instant,
}

impl FileWatch {
    /// Watches `path` from now on (it names the file just opened).
    pub(super) fn new(path: &Path) -> FileWatch {
        FileWatch {
            path: path.to_path_buf(),
            opened: FileId::of(path),
            next_look: Instant::now() + EVERY,
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// When it is time to look: `Some(what happened)` if the path no longer names the opened
    /// file. In-memory stores (no file) never move.
    pub(super) fn moved(&mut self) -> Option<&'static str> {
        let now = Instant::now();
        if now < self.next_look || self.opened.is_none() {
            return None;
        }
        self.next_look = now + EVERY;
        match FileId::of(&self.path) {
            None => Some("was deleted or moved away"),
            Some(id) if Some(id) != self.opened => Some("was replaced by another file"),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_or_replaced_file_is_noticed_and_an_untouched_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        std::fs::write(&path, b"one").unwrap();
        // Held open, as the store is: its inode cannot be reused by the file that replaces it.
        let _held = std::fs::File::open(&path).unwrap();
        let mut watch = FileWatch::new(&path);
        watch.next_look = Instant::now();
        assert_eq!(watch.moved(), None);
        assert_eq!(watch.moved(), None, "not looked at again at once");

        std::fs::remove_file(&path).unwrap();
        watch.next_look = Instant::now();
        assert_eq!(watch.moved(), Some("was deleted or moved away"));

        std::fs::write(dir.path().join("other.db"), b"two").unwrap();
        std::fs::rename(dir.path().join("other.db"), &path).unwrap();
        watch.next_look = Instant::now();
        assert_eq!(watch.moved(), Some("was replaced by another file"));

        let mut fresh = FileWatch::new(&path);
        fresh.next_look = Instant::now();
        assert_eq!(fresh.moved(), None);
    }
}
