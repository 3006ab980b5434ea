//! Path rules of volumes: where a `subPath` lands inside its volume (never outside it, even
//! through a symlink), and the `hostPath` `type` checks.

use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

/// Check a `subPath` (or an expanded `subPathExpr`) as the API does: relative, no `..`.
pub fn check_sub_path(sub: &str) -> Result<(), String> {
    let p = Path::new(sub);
    if p.is_absolute() {
        return Err(format!("subPath {sub:?} must be a relative path"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("subPath {sub:?} must not contain '..'"));
    }
    Ok(())
}

/// The host path a `subPath` of the volume at `volume` names, created as a directory when it
/// does not exist (as kubelet does). Symlinks inside the volume are followed only while they
/// stay inside it: a link that leads out is refused, so a pod cannot reach the host's files
/// through a volume it can write.
pub fn resolve_sub_path(volume: &Path, sub: &str) -> Result<PathBuf, String> {
    check_sub_path(sub)?;
    let base =
        volume.canonicalize().map_err(|e| format!("volume path {}: {e}", volume.display()))?;
    let joined = base.join(sub);
    if joined.symlink_metadata().is_err() {
        std::fs::create_dir_all(&joined)
            .map_err(|e| format!("cannot create subPath {sub:?}: {e}"))?;
    }
    let real = joined.canonicalize().map_err(|e| format!("subPath {sub:?}: {e}"))?;
    if !real.starts_with(&base) {
        return Err(format!("subpath {sub:?} is outside of the volume {}", volume.display()));
    }
    Ok(real)
}

/// What a `hostPath` volume's `type` asks of its path; creates it for the `…OrCreate` types.
/// Messages are kubelet's.
pub fn check_host_path(path: &Path, kind: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path)
                    .and_then(|()| {
                        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    })
                    .map_err(|e| format!("hostPath type check failed: {shown}: {e}"))?;
                return Ok(());
            }
            is(meta.is_ok_and(|m| m.is_dir()), || format!("{shown} is not a directory"))
        }
        "Directory" => is(meta.is_ok_and(|m| m.is_dir()), || format!("{shown} is not a directory")),
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("hostPath type check failed: {shown}: {e}"))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|_| {
                        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                    })
                    .map_err(|e| format!("hostPath type check failed: {shown}: {e}"))?;
                return Ok(());
            }
            is(meta.is_ok_and(|m| m.is_file()), || format!("{shown} is not a file"))
        }
        "File" => is(meta.is_ok_and(|m| m.is_file()), || format!("{shown} is not a file")),
        "Socket" => is(meta.is_ok_and(|m| m.file_type().is_socket()), || {
            format!("{shown} is not a socket file")
        }),
        "CharDevice" => is(meta.is_ok_and(|m| m.file_type().is_char_device()), || {
            format!("{shown} is not a character device")
        }),
        "BlockDevice" => is(meta.is_ok_and(|m| m.file_type().is_block_device()), || {
            format!("{shown} is not a block device")
        }),
        other => Err(format!("hostPath type {other:?} is not supported")),
    }
}

fn is(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("hostPath type check failed: {}", message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_stay_inside_their_volume() {
        let tmp = tempfile::tempdir().expect("tmp");
        let vol = tmp.path().join("vol");
        std::fs::create_dir_all(vol.join("a")).expect("mkdir");
        std::fs::write(vol.join("a/f"), "x").expect("write");
        let real = resolve_sub_path(&vol, "a/f").expect("inside");
        assert!(real.ends_with("vol/a/f"), "{real:?}");
        // Missing sub directories are created, as kubelet does.
        assert!(resolve_sub_path(&vol, "new/dir").expect("created").is_dir());
        assert!(resolve_sub_path(&vol, "../x").is_err());
        assert!(resolve_sub_path(&vol, "/etc").is_err());
        // A link that leads out of the volume is refused; one that stays inside is followed.
        std::os::unix::fs::symlink("/etc", vol.join("out")).expect("link");
        assert!(resolve_sub_path(&vol, "out").unwrap_err().contains("outside"));
        std::os::unix::fs::symlink("a", vol.join("in")).expect("link");
        assert!(resolve_sub_path(&vol, "in/f").expect("inside").ends_with("vol/a/f"));
    }

    #[test]
    fn host_path_types_are_checked_and_created() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("d");
        assert!(check_host_path(&dir, "Directory").unwrap_err().contains("is not a directory"));
        check_host_path(&dir, "DirectoryOrCreate").expect("created");
        assert!(dir.is_dir());
        check_host_path(&dir, "Directory").expect("now a dir");
        assert!(check_host_path(&dir, "File").unwrap_err().contains("is not a file"));
        let file = tmp.path().join("x/f");
        check_host_path(&file, "FileOrCreate").expect("created");
        assert!(file.is_file());
        check_host_path(&file, "File").expect("a file");
        assert!(check_host_path(&file, "Socket").unwrap_err().contains("socket"));
        check_host_path(Path::new("/dev/null"), "CharDevice").expect("char device");
        check_host_path(&tmp.path().join("nothing"), "").expect("no check");
        assert!(check_host_path(&file, "Bogus").is_err());
    }
}
