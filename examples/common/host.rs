//! The machine a benchmark runs on: the file system of its scratch directory and the disk's
//! sync-write speed there, the load average, the process's memory counters, and the files a
//! run left.
//!
//! ```ignore
//! #[path = "common/host.rs"]
//! mod host;
//! ```

// Shared by the benchmarks; each uses a part.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// File system type of the mount holding `path` (from /proc/mounts; the longest match wins),
/// `unknown` when it cannot be read. An ext3/ext4 mount without a journal (no
/// `/proc/fs/jbd2/<device>-*`) is `ext4 (no journal)`: there, ext4 skips every inode freed in the
/// last 60–300 s when it allocates one (`recently_deleted` in fs/ext4/ialloc.c), so file
/// creates slow down under steady create-and-delete churn, as a table's commits and its
/// maintenance make.
pub fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".to_string();
    };
    let unescape = |s: &str| {
        s.replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\")
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, kind) = (f.next()?, f.next()?, f.next()?);
            let at = PathBuf::from(unescape(at));
            path.starts_with(&at)
                .then(|| (at.components().count(), kind.to_string(), dev.to_string()))
        })
        .max_by_key(|(depth, _, _)| *depth)
        .map_or_else(
            || "unknown".to_string(),
            |(_, kind, dev)| match (kind.as_str(), has_journal(&dev)) {
                ("ext3" | "ext4", Some(false)) => format!("{kind} (no journal)"),
                _ => kind,
            },
        )
}

/// Whether the block device `dev` (`/dev/vda`, a loop device's `/dev/loop0`) has a jbd2
/// journal running: a `/proc/fs/jbd2/<name>-<n>` entry. None when /proc/fs/jbd2 is unreadable.
fn has_journal(dev: &str) -> Option<bool> {
    let name = Path::new(dev).file_name()?.to_str()?.to_string();
    let entries = std::fs::read_dir("/proc/fs/jbd2").ok()?;
    Some(entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(name.as_str()))
            .is_some_and(|rest| rest.starts_with('-'))
    }))
}

/// The 1-minute load average (other work on the machine skews every figure); NaN when
/// unknown.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A `kB` field of /proc/self/status, e.g. `VmRSS:` or `VmHWM:` (peak RSS).
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the kernel's peak-RSS counter (VmHWM) to the current RSS through
/// /proc/self/clear_refs (Linux ≥ 4.0); false when refused.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Hands the allocator's free memory back to the kernel (glibc's `malloc_trim`), so a run's
/// peak RSS is not hidden by memory an earlier run freed but the process kept; false where
/// there is no such call.
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes a byte count and touches only the allocator's own
        // free lists; it is safe to call at any time from any thread.
        unsafe { malloc_trim(0) };
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Removes `dir` (if it exists) and runs `sync`, so that the next timed run starts with no
/// dirty pages of the previous one.
pub fn settle(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = Command::new("sync").status();
}

/// The disk's sync-write time: `bytes` of incompressible data written to a new file in `dir`
/// in 1 MiB blocks, then `fdatasync` (`dd bs=1M conv=fdatasync`; what a durable write must at
/// least do). Seconds; the file is removed afterwards.
pub fn sync_write(dir: &Path, bytes: u64) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("sync-write.bin");
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let start = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(secs)
}

/// Files and bytes under a directory, Parquet files apart.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeStats {
    pub parquet_files: u64,
    pub parquet_bytes: u64,
    pub other_files: u64,
    pub other_bytes: u64,
}

impl TreeStats {
    /// Bytes of every file.
    pub fn bytes(&self) -> u64 {
        self.parquet_bytes + self.other_bytes
    }
}

/// What is under `dir` (entries that cannot be read are skipped; nothing when `dir` does not
/// exist).
pub fn tree_stats(dir: &Path) -> TreeStats {
    let mut out = TreeStats::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "parquet") {
                out.parquet_files += 1;
                out.parquet_bytes += meta.len();
            } else {
                out.other_files += 1;
                out.other_bytes += meta.len();
            }
        }
    }
    out
}
