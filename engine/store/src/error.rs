//! Errors returned by the store.

use std::io;
use std::path::PathBuf;

/// Every error the store returns.
///
/// Each variant has a stable [`code`](StoreError::code) and says whether the
/// operation may be retried ([`is_retryable`](StoreError::is_retryable)).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed. The path and the operation name what failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation, e.g. "open", "write", "rename".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Data on disk failed verification outside the region recovery may repair.
    #[error(
        "corruption in {file} at byte offset {offset}{}: {reason}. The files were left as they \
         are. To recover: stop this node, move this group's data directory aside (keep it for \
         analysis) and restart the node empty so it catches up from a snapshot and the log of a \
         healthy replica; or restore the directory from a backup. See docs/storage.md, section \
         \"Operator actions\".",
        index.map(|i| format!(" (log index {i})")).unwrap_or_default()
    )]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged record or header within `file`.
        offset: u64,
        /// The log index of the damaged record when it is known.
        index: Option<u64>,
        /// What check failed.
        reason: String,
    },
    /// A file names a format version this build does not read (one written
    /// by another release). Nothing past its magic and version was read, and
    /// the file was left as it is.
    #[error(
        "{file}: {kind} in format version {found}, but this build reads format version \
         {supported} only. The files were left as they are. Run a release that reads \
         version {found} (see docs/server.md, section \"Upgrades\")."
    )]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// What the file is: "log segment", "hard state", "snapshot".
        kind: &'static str,
        /// The version the file names.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// The disk is full (ENOSPC or EDQUOT). Nothing was corrupted; writes are
    /// refused until space returns, then the log continues by itself.
    #[error("disk full writing {path}: free space on the volume; writes resume by themselves")]
    DiskFull {
        /// The file that could not be written.
        path: PathBuf,
    },
    /// The log stopped after an unrecoverable error (typically a failed fsync,
    /// after which the kernel may have dropped dirty pages). Every later call
    /// returns this error. Restart the node: recovery reads what is on disk.
    #[error("log stopped: {cause}; restart the node so recovery reads what is durable on disk")]
    Stopped {
        /// The error that stopped the log.
        cause: String,
    },
    /// Too many bytes or batches are waiting to be written. Nothing was
    /// queued; retry after the log reports progress.
    #[error(
        "log write queue full ({pending_batches} batches, {pending_bytes} bytes pending); \
         retry after progress"
    )]
    Backpressure {
        /// Batches submitted but not yet written.
        pending_batches: usize,
        /// Bytes submitted but not yet written.
        pending_bytes: u64,
    },
    /// The caller passed something the store cannot accept. Nothing changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The requested log index is not stored (compacted away or never written).
    #[error("log index {index} not available (stored range {first}..={last})")]
    Unavailable {
        /// The requested index.
        index: u64,
        /// First stored index.
        first: u64,
        /// Last stored index (`first - 1` when the log is empty).
        last: u64,
    },
    /// The log or snapshot store was closed.
    #[error("closed")]
    Closed,
}

impl StoreError {
    /// A stable, machine-readable code for this error kind.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Io { .. } => "STORE_IO",
            StoreError::Corrupt { .. } => "STORE_CORRUPT",
            StoreError::UnsupportedVersion { .. } => "STORE_UNSUPPORTED_VERSION",
            StoreError::DiskFull { .. } => "STORE_DISK_FULL",
            StoreError::Stopped { .. } => "STORE_STOPPED",
            StoreError::Backpressure { .. } => "STORE_BACKPRESSURE",
            StoreError::InvalidArgument(_) => "STORE_INVALID_ARGUMENT",
            StoreError::Unavailable { .. } => "STORE_UNAVAILABLE",
            StoreError::Closed => "STORE_CLOSED",
        }
    }

    /// Whether retrying the same call later can succeed without operator action.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backpressure { .. } | StoreError::DiskFull { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if is_disk_full(&source) {
            StoreError::DiskFull { path }
        } else {
            StoreError::Io { op, path, source }
        }
    }

    /// Refuses a file that starts with `magic` and names a format version
    /// other than `supported` (at bytes 8..10, u16 LE, the place every
    /// format of the store keeps it). Checked before anything else of the
    /// file is read, so a newer layout is never misread as damage.
    pub(crate) fn check_version(
        b: &[u8],
        magic: &[u8; 8],
        supported: u16,
        kind: &'static str,
        file: &std::path::Path,
    ) -> Result<()> {
        if b.len() >= 10 && &b[..8] == magic {
            let found = u16::from_le_bytes([b[8], b[9]]);
            if found != supported {
                return Err(StoreError::UnsupportedVersion {
                    file: file.to_path_buf(),
                    kind,
                    found,
                    supported,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        index: Option<u64>,
        reason: impl Into<String>,
    ) -> Self {
        StoreError::Corrupt {
            file: file.into(),
            offset,
            index,
            reason: reason.into(),
        }
    }
}

/// Whether an IO error means "no space left" (ENOSPC) or "quota exceeded" (EDQUOT).
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
