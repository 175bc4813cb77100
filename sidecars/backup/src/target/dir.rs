//! A directory: a mounted disk, a NAS share, another local path. Files go in
//! through a synced temporary file and a rename, and the directory is synced.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{Target, TargetError};
use crate::archive::{create_new, sync_dir};

pub struct DirTarget {
    path: PathBuf,
}

impl DirTarget {
    pub fn new(path: PathBuf) -> Self {
        DirTarget { path }
    }

    fn error(&self, what: &str, e: io::Error) -> TargetError {
        let message = format!("{}: {what}: {e}", self.path.display());
        match e.kind() {
            // The directory is gone or not ours: an operator must look.
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                TargetError::refused(message)
            }
            // A full or read-only disk, an unmounted share that returns: retried.
            _ => TargetError::unavailable(message),
        }
    }

    fn check_dir(&self) -> Result<(), TargetError> {
        match fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(TargetError::refused(format!(
                "{}: not a directory",
                self.path.display()
            ))),
            Err(e) => Err(self.error("the target directory", e)),
        }
    }
}

impl Target for DirTarget {
    fn put(&self, local: &Path, name: &str) -> Result<(), TargetError> {
        self.check_dir()?;
        let tmp = self
            .path
            .join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let result = (|| {
            let mut out = create_new(&tmp)?;
            io::copy(&mut fs::File::open(local)?, &mut out)?;
            out.sync_all()?;
            fs::rename(&tmp, self.path.join(name))?;
            sync_dir(&self.path)
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.error(&format!("cannot store {name}"), e)
        })
    }

    fn list(&self) -> Result<Vec<(String, u64)>, TargetError> {
        self.check_dir()?;
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(|e| self.error("cannot list", e))? {
            let entry = entry.map_err(|e| self.error("cannot list", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                if meta.is_file() {
                    out.push((name, meta.len()));
                }
            }
        }
        Ok(out)
    }

    fn get(&self, name: &str, local: &Path) -> Result<(), TargetError> {
        let src = self.path.join(name);
        let mut out = create_new(local)
            .map_err(|e| TargetError::failed(format!("{}: {e}", local.display())))?;
        let mut input =
            fs::File::open(&src).map_err(|e| self.error(&format!("cannot read {name}"), e))?;
        io::copy(&mut input, &mut out)
            .map_err(|e| self.error(&format!("cannot read {name}"), e))?;
        out.sync_all()
            .map_err(|e| TargetError::failed(format!("{}: {e}", local.display())))
    }

    fn delete(&self, name: &str) -> Result<(), TargetError> {
        match fs::remove_file(self.path.join(name)) {
            Ok(()) => sync_dir(&self.path).map_err(|e| self.error("sync", e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(&format!("cannot delete {name}"), e)),
        }
    }
}
