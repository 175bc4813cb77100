//! Writing a snapshot file where a control client asks, safely: the relay
//! runs with its private key in hand and the client may be any member of the
//! relay's group, so the target is checked before anything is written and
//! the bytes go to a file created new.
//!
//! - never inside the data directory, and never over the identity file or
//!   the control socket, wherever those are configured;
//! - the file written is created with `O_EXCL | O_NOFOLLOW`, mode 0600, under
//!   a random name beside the target, then renamed over it: a symlink, FIFO
//!   or file planted at any name the relay writes is never opened;
//! - an existing target is replaced only if it is a regular file;
//! - the data is synced, then the directory, so a crash leaves the old
//!   snapshot or the new one, never half of one.
//!
//! This is file work: it runs on a blocking thread, never on the swarm task.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Paths a snapshot must never be written into or over.
#[derive(Debug, Clone)]
pub struct Forbidden {
    pub data_dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Writes `bytes` to `path` as described above.
pub fn write(path: &Path, bytes: &[u8], forbidden: &Forbidden) -> Result<(), String> {
    let fail = |what: &str| format!("{}: {what}", path.display());
    let name = path
        .file_name()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .ok_or_else(|| fail("expected a file path, not a directory"))?;
    let parent = path
        .parent()
        .ok_or_else(|| fail("expected a file path, not a directory"))?;
    let dir = parent.canonicalize().map_err(|e| {
        fail(&format!(
            "the directory {} cannot be used: {e}",
            parent.display()
        ))
    })?;
    let target = dir.join(name);
    if let Ok(data_dir) = forbidden.data_dir.canonicalize() {
        if target.starts_with(&data_dir) {
            return Err(fail(&format!(
                "refusing to write inside the relay's data directory {}: choose a directory outside it",
                data_dir.display()
            )));
        }
    }
    for file in &forbidden.files {
        let same = file
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .zip(file.file_name())
            .is_some_and(|(d, n)| d.join(n) == target);
        if same {
            return Err(fail(&format!(
                "refusing to replace {}, which the relay needs",
                file.display()
            )));
        }
    }
    match std::fs::symlink_metadata(&target) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(fail(
                "exists and is not a regular file (a symlink, directory, FIFO or socket); refusing to replace it",
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(&format!("cannot inspect: {e}"))),
    }

    let (tmp, mut file) = create_new_beside(&dir, name)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &target))
        .and_then(|()| std::fs::File::open(&dir)?.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(&format!("cannot write the snapshot: {e}")));
    }
    Ok(())
}

/// A new file with a random name in `dir`, created exclusively and without
/// following a link; a clash with a name someone planted is retried.
fn create_new_beside(
    dir: &Path,
    name: &std::ffi::OsStr,
) -> Result<(PathBuf, std::fs::File), String> {
    let mut last = None;
    for _ in 0..8 {
        let tmp = dir.join(format!(
            ".{}.{:016x}.tmp",
            name.to_string_lossy(),
            rand::random::<u64>()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(format!(
                    "{}: cannot create a file to write the snapshot: {e}",
                    dir.display()
                ))
            }
        }
    }
    Err(format!(
        "{}: cannot create a file to write the snapshot: {}",
        dir.display(),
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let d =
                std::env::temp_dir().join(format!("bsv-snapshot-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("data")).unwrap();
            std::fs::create_dir_all(d.join("out")).unwrap();
            Self(d)
        }

        fn forbidden(&self) -> Forbidden {
            Forbidden {
                data_dir: self.0.join("data"),
                files: vec![
                    self.0.join("data/identity.key"),
                    self.0.join("key.elsewhere"),
                ],
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn writes_a_new_owner_only_file_and_replaces_an_old_one() {
        let s = Scratch::new("new");
        let target = s.0.join("out/s.json");
        write(&target, b"one", &s.forbidden()).unwrap();
        write(&target, b"two", &s.forbidden()).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(s.0.join("out")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn refuses_the_data_directory_and_the_relays_files() {
        let s = Scratch::new("forbidden");
        for target in [
            s.0.join("data/s.json"),
            s.0.join("data/identity.key"),
            s.0.join("out/../data/x.json"),
            s.0.join("key.elsewhere"),
        ] {
            let e = write(&target, b"x", &s.forbidden()).unwrap_err();
            assert!(e.contains("refusing"), "{target:?}: {e}");
        }
    }

    #[test]
    fn never_follows_or_replaces_a_link_or_special_file() {
        let s = Scratch::new("links");
        let secret = s.0.join("secret");
        std::fs::write(&secret, b"keep").unwrap();
        let link = s.0.join("out/link.json");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let e = write(&link, b"x", &s.forbidden()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        assert_eq!(std::fs::read(&secret).unwrap(), b"keep");

        let fifo = s.0.join("out/fifo.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = write(&fifo, b"x", &s.forbidden()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
