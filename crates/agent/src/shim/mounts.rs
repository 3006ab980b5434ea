//! The private mount namespace of a process-runtime container with volumes.
//!
//! Before it starts the workload, the shim leaves the host's mount namespace (as root a plain
//! new mount namespace; otherwise a user namespace that maps only its own user, plus a mount
//! namespace in it), makes every mount private (nothing propagates back to the host), and
//! bind-mounts each volume at its `mountPath`. The workload inherits that namespace; when the
//! shim and the workload end, the namespace and all its mounts vanish with them.
//!
//! A `mountPath` whose directory does not exist on the host must appear without creating
//! anything on the host. Its nearest existing ancestor `A` is *mirrored*: a tmpfs covers `A` in
//! the private namespace and every entry of the original `A` is bound back into it (or, for a
//! symlink, recreated), so the container still sees all of `A` and the missing directories can
//! be made in the tmpfs. When `A` is `/` (a tmpfs cannot usefully cover the root a process
//! already stands on), a new root is built the same way on a tmpfs in the container's state
//! directory and the shim `chroot`s into it. Writes to entries of a mirrored directory reach
//! the host as before (they are bind mounts); only new top-level names stay in the tmpfs.

use crate::runtime::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whether the shim runs as root (a plain mount namespace) or not (a user namespace too).
pub fn privileged() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Enter a private mount namespace and mount `mounts` in it; `scratch` is the container's
/// state directory (for staging). Errors say what the host refused.
pub fn enter(mounts: &[Mount], scratch: &Path) -> Result<(), String> {
    if privileged() {
        unshare(CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("cannot make a private mount namespace: {e}"))?;
    } else {
        let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(|e| {
            format!(
                "cannot make a user and mount namespace for the pod's volumes ({e}): run kumo \
                 as root, or allow unprivileged user namespaces"
            )
        })?;
        let write = |file: &str, text: String| {
            std::fs::write(format!("/proc/self/{file}"), text)
                .map_err(|e| format!("cannot write /proc/self/{file}: {e}"))
        };
        write("setgroups", "deny".into())?;
        write("uid_map", format!("{uid} {uid} 1"))?;
        write("gid_map", format!("{gid} {gid} 1"))?;
    }
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("cannot make mounts private: {e}"))?;
    let mut state =
        State { scratch: scratch.to_path_buf(), mirrored: Vec::new(), volumes: Vec::new() };
    let mut ordered: Vec<&Mount> = mounts.iter().collect();
    ordered.sort_by_key(|m| Path::new(&m.container_path).components().count());
    // A mount point under a missing top-level directory needs the new root before anything
    // is mounted (the chroot would otherwise hide mounts made on the old root).
    for m in &ordered {
        let target = target_of(m)?;
        if nearest_existing(&target) == Path::new("/") {
            state.new_root()?;
            break;
        }
    }
    for m in ordered {
        let target = target_of(m)?;
        let is_dir = m
            .host_path
            .metadata()
            .map_err(|e| format!("volume path {}: {e}", m.host_path.display()))?
            .is_dir();
        state.make_target(&target, is_dir)?;
        bind(&m.host_path, &target, m.read_only)?;
        state.volumes.push(target);
    }
    Ok(())
}

fn target_of(m: &Mount) -> Result<PathBuf, String> {
    let target = PathBuf::from(&m.container_path);
    if !target.is_absolute() || target == Path::new("/") {
        return Err(format!("mountPath {:?} must be an absolute path below /", m.container_path));
    }
    Ok(target)
}

struct State {
    scratch: PathBuf,
    /// Directories covered by a tmpfs: mount points may be made right in them (not below:
    /// their entries are the host's).
    mirrored: Vec<PathBuf>,
    /// Volumes already mounted: mount points below them are made in the volume, as runc does.
    volumes: Vec<PathBuf>,
}

impl State {
    /// Make `target` exist in this namespace without creating anything on the host.
    fn make_target(&mut self, target: &Path, is_dir: bool) -> Result<(), String> {
        if target.symlink_metadata().is_ok() {
            return Ok(());
        }
        let ancestor = nearest_existing(target);
        let writable = self.mirrored.contains(&ancestor)
            || self.volumes.iter().any(|v| ancestor.starts_with(v));
        if !writable {
            self.mirror(&ancestor)?;
        }
        let made = if is_dir {
            std::fs::create_dir_all(target)
        } else {
            target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(target, b""))
        };
        made.map_err(|e| format!("cannot make mount point {}: {e}", target.display()))
    }

    /// Cover `dir` with a tmpfs that holds bind mounts of all its original entries.
    fn mirror(&mut self, dir: &Path) -> Result<(), String> {
        let staging = self.scratch.join(format!("mirror-{}", self.mirrored.len()));
        std::fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
        bind_rec(dir, &staging)?;
        // The staging path may itself lie under `dir` (the data dir under /tmp): keep a handle
        // on it that the tmpfs cannot hide.
        let handle = std::fs::File::open(&staging)
            .map_err(|e| format!("cannot open {}: {e}", staging.display()))?;
        let original = PathBuf::from(format!("/proc/self/fd/{}", fd_of(&handle)));
        tmpfs_like(dir, dir)?;
        populate(&original, dir)?;
        let _ = umount2(&original, MntFlags::MNT_DETACH);
        drop(handle);
        let _ = std::fs::remove_dir(&staging);
        self.mirrored.push(dir.to_path_buf());
        Ok(())
    }

    /// A tmpfs root holding bind mounts of every entry of `/`, then `chroot` into it.
    fn new_root(&mut self) -> Result<(), String> {
        let root = self.scratch.join("root");
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        tmpfs_like(Path::new("/"), &root)?;
        // Recursive binds below must not copy this tree into itself.
        mount(None::<&str>, &root, None::<&str>, MsFlags::MS_UNBINDABLE, None::<&str>)
            .map_err(|e| format!("cannot make {} unbindable: {e}", root.display()))?;
        populate(Path::new("/"), &root)?;
        nix::unistd::chroot(&root).map_err(|e| format!("cannot chroot: {e}"))?;
        std::env::set_current_dir("/").map_err(|e| format!("cannot chdir to /: {e}"))?;
        self.mirrored.push(PathBuf::from("/"));
        Ok(())
    }
}

fn fd_of(file: &std::fs::File) -> i32 {
    use std::os::fd::AsRawFd;
    file.as_raw_fd()
}

/// Recreate every entry of `from` in `to`: directories and files as bind mounts (with what is
/// mounted below them), symlinks as symlinks.
fn populate(from: &Path, to: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| format!("{}: {e}", src.display()))?;
        if kind.is_symlink() {
            let link = std::fs::read_link(&src).map_err(|e| format!("{}: {e}", src.display()))?;
            std::os::unix::fs::symlink(&link, &dst)
                .map_err(|e| format!("{}: {e}", dst.display()))?;
            continue;
        }
        let made =
            if kind.is_dir() { std::fs::create_dir(&dst) } else { std::fs::write(&dst, b"") };
        made.map_err(|e| format!("cannot make {}: {e}", dst.display()))?;
        bind_rec(&src, &dst)?;
    }
    Ok(())
}

/// A tmpfs at `at` with the mode and owner of `like`.
fn tmpfs_like(like: &Path, at: &Path) -> Result<(), String> {
    let meta = like.metadata().map_err(|e| format!("{}: {e}", like.display()))?;
    let options = format!(
        "mode={:o},uid={},gid={}",
        meta.permissions().mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );
    mount(Some("tmpfs"), at, Some("tmpfs"), MsFlags::MS_NOSUID, Some(options.as_str()))
        .map_err(|e| format!("cannot mount a tmpfs on {}: {e}", at.display()))
}

fn bind_rec(from: &Path, to: &Path) -> Result<(), String> {
    mount(Some(from), to, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| format!("cannot bind {} on {}: {e}", from.display(), to.display()))
}

/// Bind `from` on `to`, read-only if asked (a remount keeps the flags the host's mount has:
/// in a user namespace they are locked and a remount without them is refused).
fn bind(from: &Path, to: &Path, read_only: bool) -> Result<(), String> {
    bind_rec(from, to)?;
    if !read_only {
        return Ok(());
    }
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if let Ok(st) = nix::sys::statvfs::statvfs(to) {
        use nix::sys::statvfs::FsFlags;
        for (have, want) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if st.flags().contains(have) {
                flags |= want;
            }
        }
    }
    mount(None::<&str>, to, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("cannot make {} read-only: {e}", to.display()))
}

/// The closest ancestor of `path` (or `path` itself) that exists.
fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while p.symlink_metadata().is_err() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}
