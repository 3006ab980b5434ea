//! kubelet's atomic writer: the files of a ConfigMap, Secret, downwardAPI or projected volume
//! change all at once or not at all.
//!
//! Layout of a volume directory (as kubelet's `AtomicWriter` lays it out, see
//! <https://kubernetes.io/docs/concepts/configuration/configmap/#mounted-configmaps-are-updated-automatically>):
//!
//! ```text
//! <dir>/..2026_11_23_15_40_00.1234567   the payload, files with their modes
//! <dir>/..data -> ..2026_11_23_15_40_00.1234567
//! <dir>/key    -> ..data/key             one symlink per top-level entry of the payload
//! ```
//!
//! An update writes a new timestamped directory, points a temporary symlink `..data_tmp` at it
//! and renames it over `..data`: `rename(2)` is atomic, so a reader that opens `key` (through
//! `..data`) sees either the old payload or the new one, never a mix. Then the symlinks of keys
//! that appeared are added, those of keys that went away removed, and the old directory is
//! deleted. Names starting with `..` are reserved for the writer.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path};

/// The symlink that points at the current payload.
pub const DATA_DIR: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    /// Its content.
    pub data: Vec<u8>,
    /// Its permission bits (`defaultMode` or the item's `mode`).
    pub mode: u32,
}

/// A payload: relative paths (`key`, `dir/key`) to files.
pub type Payload = BTreeMap<String, FileData>;

/// Check a payload path as kubelet does: relative, no `..` element, not starting with `..`.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if path.starts_with("..") {
        return Err(format!("invalid path {path:?}: must not start with '..'"));
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(format!("invalid path {path:?}: must be relative"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("invalid path {path:?}: must not contain '..'"));
    }
    Ok(())
}

/// Write `payload` into `dir` atomically. Returns whether anything changed (an identical
/// payload leaves the directory alone, so readers see no churn).
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    for path in payload.keys() {
        check_path(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    std::fs::create_dir_all(dir)?;
    let current = std::fs::read_link(dir.join(DATA_DIR)).ok();
    if let Some(old) = &current {
        if same(&dir.join(old), payload) {
            // Still make sure the user-visible links exist (a crash between the swap and
            // the links leaves them missing).
            links(dir, payload)?;
            return Ok(false);
        }
    }
    let stamp = chrono::Utc::now().format("..%Y_%m_%d_%H_%M_%S").to_string();
    let name = format!("{stamp}.{}", uuid::Uuid::new_v4().simple());
    let ts_dir = dir.join(&name);
    std::fs::create_dir(&ts_dir)?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    for (path, file) in payload {
        let target = ts_dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &file.data)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode & 0o7777))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&name, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA_DIR))?;
    links(dir, payload)?;
    // Links of top-level entries that are gone.
    let wanted = top_level(payload);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with("..") || wanted.contains(&file) {
            continue;
        }
        if entry.file_type()?.is_symlink() {
            std::fs::remove_file(entry.path())?;
        }
    }
    // Old payload directories (the one just replaced, and any left by a crash).
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with("..") && file != name && file != DATA_DIR && entry.file_type()?.is_dir()
        {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(true)
}

/// The first path element of every payload path.
fn top_level(payload: &Payload) -> BTreeSet<String> {
    payload.keys().filter_map(|p| p.split('/').next().map(String::from)).collect()
}

/// `dir/<top> -> ..data/<top>` for every top-level entry.
fn links(dir: &Path, payload: &Payload) -> io::Result<()> {
    for top in top_level(payload) {
        let link = dir.join(&top);
        let target = Path::new(DATA_DIR).join(&top);
        match std::fs::read_link(&link) {
            Ok(t) if t == target => continue,
            Ok(_) => std::fs::remove_file(&link)?,
            Err(_) if link.symlink_metadata().is_ok() => {
                return Err(io::Error::other(format!(
                    "{} exists and is not a link of the volume",
                    link.display()
                )))
            }
            Err(_) => {}
        }
        symlink(&target, &link)?;
    }
    Ok(())
}

/// Whether the payload directory `ts_dir` holds exactly `payload`.
fn same(ts_dir: &Path, payload: &Payload) -> bool {
    let mut found = 0usize;
    if !count_files(ts_dir, &mut found) || found != payload.len() {
        return false;
    }
    payload.iter().all(|(path, file)| {
        let p = ts_dir.join(path);
        let mode_ok =
            p.metadata().is_ok_and(|m| m.permissions().mode() & 0o7777 == file.mode & 0o7777);
        mode_ok && std::fs::read(&p).is_ok_and(|d| d == file.data)
    })
}

fn count_files(dir: &Path, n: &mut usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                if !count_files(&entry.path(), n) {
                    return false;
                }
            }
            Ok(_) => *n += 1,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(items: &[(&str, &str, u32)]) -> Payload {
        items
            .iter()
            .map(|(k, v, m)| (k.to_string(), FileData { data: v.as_bytes().to_vec(), mode: *m }))
            .collect()
    }

    fn read(dir: &Path, key: &str) -> String {
        std::fs::read_to_string(dir.join(key)).expect("read")
    }

    #[test]
    fn files_are_links_into_the_current_data_dir() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("vol");
        assert!(write(&dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)])).expect("w"));
        assert_eq!(read(&dir, "a"), "1");
        assert_eq!(read(&dir, "sub/b"), "2");
        assert_eq!(std::fs::read_link(dir.join("a")).expect("link"), Path::new("..data/a"));
        assert_eq!(std::fs::read_link(dir.join("sub")).expect("link"), Path::new("..data/sub"));
        let data = std::fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
        let mode = std::fs::metadata(dir.join("sub/b")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
    }

    #[test]
    fn an_update_swaps_the_data_link_and_drops_old_keys_and_dirs() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("vol");
        write(&dir, &payload(&[("a", "1", 0o644), ("gone", "x", 0o644)])).expect("w");
        let first = std::fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert!(write(&dir, &payload(&[("a", "2", 0o644), ("new", "y", 0o644)])).expect("w"));
        let second = std::fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert_ne!(first, second);
        assert_eq!(read(&dir, "a"), "2");
        assert_eq!(read(&dir, "new"), "y");
        assert!(dir.join("gone").symlink_metadata().is_err(), "the link of a removed key stays");
        assert!(!dir.join(&first).exists(), "the old payload dir stays");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}"); // ..data, the ts dir, a, new
    }

    #[test]
    fn an_identical_payload_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("vol");
        let p = payload(&[("a", "1", 0o644)]);
        assert!(write(&dir, &p).expect("w"));
        let first = std::fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert!(!write(&dir, &p).expect("w"));
        assert_eq!(std::fs::read_link(dir.join(DATA_DIR)).expect("..data"), first);
        // A mode change is a change.
        assert!(write(&dir, &payload(&[("a", "1", 0o600)])).expect("w"));
    }

    #[test]
    fn readers_never_see_a_mix_of_two_payloads() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("vol");
        write(&dir, &payload(&[("a", "0", 0o644), ("b", "0", 0o644)])).expect("w");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Resolve ..data once, as a reader that opens the directory would.
                    let Ok(target) = std::fs::read_link(dir.join(DATA_DIR)) else { continue };
                    let base = dir.join(target);
                    let (Ok(a), Ok(b)) = (
                        std::fs::read_to_string(base.join("a")),
                        std::fs::read_to_string(base.join("b")),
                    ) else {
                        continue;
                    };
                    assert_eq!(a, b, "a mix of two payloads");
                    reads += 1;
                }
                reads
            })
        };
        for i in 1..200 {
            let v = i.to_string();
            write(&dir, &payload(&[("a", &v, 0o644), ("b", &v, 0o644)])).expect("w");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().expect("reader") > 0);
        assert_eq!(read(&dir, "a"), "199");
    }

    #[test]
    fn paths_that_escape_or_use_reserved_names_are_refused() {
        assert!(check_path("a/b").is_ok());
        assert!(check_path("../x").is_err());
        assert!(check_path("a/../../x").is_err());
        assert!(check_path("/etc/passwd").is_err());
        assert!(check_path("..data").is_err());
        assert!(check_path("").is_err());
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(write(&tmp.path().join("v"), &payload(&[("../x", "1", 0o644)])).is_err());
    }
}
