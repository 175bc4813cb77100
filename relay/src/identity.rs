//! The relay's libp2p identity. Bots have the relay's peer ID compiled in, so
//! the key is created once, kept owner-readable only, and never replaced: a
//! file that exists but cannot be read or decoded stops the relay instead of
//! silently minting a new peer ID.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use libp2p::identity::Keypair;

/// What happened when the identity was loaded.
pub enum Origin {
    Loaded,
    Created,
}

/// Loads the keypair at `path`, creating it (and its directory) on first start.
pub fn load_or_create(path: &Path) -> Result<(Keypair, Origin), String> {
    match fs::read(path) {
        Ok(bytes) => {
            let key = Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
                format!(
                    "{}: not a libp2p private key ({e}); restore it from a backup, or move it away to create a new identity (bots will need the new peer ID)",
                    path.display()
                )
            })?;
            let mode = fs::metadata(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| {
                    format!(
                        "{}: readable by others (mode {:o}) and cannot be restricted: {e}",
                        path.display(),
                        mode & 0o777
                    )
                })?;
                log::warn!(event = "identity_permissions_fixed", path = path.display().to_string().as_str(); "identity file was readable by others; set to 0600");
            }
            Ok((key, Origin::Loaded))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            write_new(path, &key)?;
            Ok((key, Origin::Created))
        }
        Err(e) => Err(format!(
            "{}: cannot read the identity file: {e}",
            path.display()
        )),
    }
}

/// Writes a new key through a temporary file so a crash never leaves a
/// half-written identity behind.
fn write_new(path: &Path, key: &Keypair) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(crate::data_dir::MODE)
        .create(dir)
        .map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
    let bytes = key
        .to_protobuf_encoding()
        .map_err(|e| format!("cannot encode the new identity: {e}"))?;
    let tmp = path.with_extension("key.tmp");
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("{}: cannot write the identity file: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_reload_and_is_owner_only() {
        let dir = std::env::temp_dir().join(format!("bsv-identity-test-{}", std::process::id()));
        let path = dir.join("sub").join("identity.key");
        let (a, origin) = load_or_create(&path).unwrap();
        assert!(matches!(origin, Origin::Created));
        let (b, origin) = load_or_create(&path).unwrap();
        assert!(matches!(origin, Origin::Loaded));
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(&path, b"garbage").unwrap();
        let err = load_or_create(&path).err().unwrap();
        assert!(err.contains("not a libp2p private key"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
