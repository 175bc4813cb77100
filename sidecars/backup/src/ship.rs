//! What is the same for every target: a backup is shipped archive first,
//! manifest last (a backup whose manifest is at the target is complete
//! there); a target's backups are read from its listing the same way as the
//! local directory's; retention deletes the manifest first.

use std::collections::BTreeMap;
use std::path::Path;

use crate::archive::Manifest;
use crate::id::{self, FileKind};
use crate::repo::Marks;
use crate::retention::{Entry, Rules};
use crate::target::{Target, TargetError};

/// Ships one backup from `dir`. Returns the bytes sent.
pub fn ship(target: &dyn Target, dir: &Path, manifest: &Manifest) -> Result<u64, TargetError> {
    let archive = dir.join(&manifest.archive.file);
    target.put(&archive, &manifest.archive.file)?;
    let name = id::manifest_file(&manifest.id);
    let path = dir.join(&name);
    let manifest_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    target.put(&path, &name)?;
    Ok(manifest.archive.bytes + manifest_bytes)
}

/// A backup as a target's listing shows it.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    pub archive: Option<(String, u64)>,
    pub manifest: bool,
}

impl Remote {
    pub fn complete(&self) -> bool {
        self.manifest && self.archive.is_some()
    }
}

pub fn remote_backups(
    target: &dyn Target,
    name: &str,
) -> Result<BTreeMap<String, Remote>, TargetError> {
    let mut out: BTreeMap<String, Remote> = BTreeMap::new();
    for (file, size) in target.list()? {
        if let Some((id, kind)) = id::of_file(name, &file) {
            let r = out.entry(id.to_string()).or_default();
            match kind {
                FileKind::Manifest => r.manifest = true,
                FileKind::Archive => r.archive = Some((file.clone(), size)),
            }
        }
    }
    Ok(out)
}

/// Applies the rules at a target. Returns the IDs deleted.
pub fn retention_at(
    target: &dyn Target,
    name: &str,
    rules: &Rules,
    marks: &Marks,
) -> Result<Vec<String>, TargetError> {
    let remote = remote_backups(target, name)?;
    let entries: Vec<Entry> = remote
        .iter()
        .filter(|(_, r)| r.complete())
        .filter_map(|(id_, _)| {
            Some(Entry {
                id: id_.clone(),
                taken: id::parse(name, id_)?,
                verified: marks.get(id_).is_none_or(|m| m.ok),
            })
        })
        .collect();
    let mut deleted = Vec::new();
    for id_ in rules.to_delete(&entries, std::time::SystemTime::now()) {
        target.delete(&id::manifest_file(&id_))?;
        if let Some((file, _)) = &remote[&id_].archive {
            target.delete(file)?;
        }
        deleted.push(id_);
    }
    Ok(deleted)
}
