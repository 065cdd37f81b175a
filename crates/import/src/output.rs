//! Atomic output: an import writes its model directory under a temporary name beside the
//! output (`.NAME.tmp-PID` in the same parent) and renames it into place only once every file
//! is written, so a failed import leaves neither a half-written model nor the temporary
//! directory, and an existing model at the output is replaced only by a complete one.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::ImportError;

/// Runs `write` on a fresh temporary directory beside `out`, then moves that directory to
/// `out` (replacing an existing directory there); on any error the temporary directory is
/// removed and `out` is left as it was.
pub(crate) fn write_atomically<T>(
    out: &Path,
    write: impl FnOnce(&Path) -> Result<T, ImportError>,
) -> Result<T, ImportError> {
    let name = out
        .file_name()
        .ok_or_else(|| invalid(out, "the output path does not end in a directory name"))?
        .to_string_lossy()
        .into_owned();
    if out.exists() && !out.is_dir() {
        return Err(invalid(out, "exists and is not a directory"));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(ImportError::io(&parent))?;
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.tmp-{pid}"));
    remove_stale(&tmp)?;
    fs::create_dir(&tmp).map_err(ImportError::io(&tmp))?;
    let written = write(&tmp).and_then(|value| {
        replace(&tmp, out, &parent.join(format!(".{name}.old-{pid}")))?;
        Ok(value)
    });
    if written.is_err() {
        // Best effort: the error being returned matters more than one that cleaning up hits.
        let _ = fs::remove_dir_all(&tmp);
    }
    written
}

/// Moves the complete directory `tmp` to `out`; an existing `out` is first moved to `old`,
/// and put back if the move fails, then removed.
fn replace(tmp: &Path, out: &Path, old: &Path) -> Result<(), ImportError> {
    if !out.exists() {
        return fs::rename(tmp, out).map_err(ImportError::io(out));
    }
    remove_stale(old)?;
    fs::rename(out, old).map_err(ImportError::io(out))?;
    if let Err(e) = fs::rename(tmp, out) {
        // Best effort: put the previous model back before reporting the failed move.
        let _ = fs::rename(old, out);
        return Err(ImportError::io(out)(e));
    }
    fs::remove_dir_all(old).map_err(ImportError::io(old))
}

/// Removes `dir` if an earlier import (of a process with the same id) left it behind.
fn remove_stale(dir: &Path) -> Result<(), ImportError> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(ImportError::io(dir))?;
    }
    Ok(())
}

/// An [`ImportError::InvalidOutput`] for `path`.
fn invalid(path: &Path, reason: &str) -> ImportError {
    ImportError::InvalidOutput {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}
