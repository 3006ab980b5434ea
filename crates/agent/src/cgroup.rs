//! Resource limits for the process runtime, with cgroup v2 (unified) or cgroup v1 (separate
//! `memory`, `cpu`, `cpuacct` hierarchies, as on hybrid hosts), whichever the host offers and
//! lets us write. Each container gets its own group under a `kumo` parent; the shim moves the
//! workload into it and reads the OOM counter when it ends.

use crate::runtime::{ContainerStats, Limits};
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
const CFS_PERIOD_US: u64 = 100_000;

/// What the host allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// The unified hierarchy: one directory per container under `parent`.
    V2 {
        /// `/sys/fs/cgroup/kumo`.
        parent: PathBuf,
    },
    /// Legacy hierarchies: one directory per container under each parent that exists.
    V1 {
        /// `/sys/fs/cgroup/memory/kumo`.
        memory: Option<PathBuf>,
        /// `/sys/fs/cgroup/cpu/kumo`.
        cpu: Option<PathBuf>,
        /// `/sys/fs/cgroup/cpuacct/kumo` (the same directory as `cpu` when co-mounted).
        cpuacct: Option<PathBuf>,
    },
    /// No writable cgroups: limits are not enforced, and the reason says why.
    Unavailable(String),
}

/// The groups of one container (what the shim joins).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Groups {
    /// `v2` or `v1`; empty when there are none.
    pub version: String,
    /// Directories to join (`cgroup.procs`), memory first.
    pub dirs: Vec<PathBuf>,
}

impl Cgroups {
    /// Look at the host and prepare the `kumo` parents.
    pub fn detect() -> Cgroups {
        Self::detect_at(Path::new(ROOT), "kumo")
    }

    fn detect_at(root: &Path, name: &str) -> Cgroups {
        if root.join("cgroup.controllers").exists() {
            let parent = root.join(name);
            let ok = std::fs::create_dir_all(&parent).is_ok()
                && enable_controllers(root).is_ok()
                && enable_controllers(&parent).is_ok();
            return if ok {
                Cgroups::V2 { parent }
            } else {
                Cgroups::Unavailable(format!(
                    "cgroup v2 at {} is not writable here (memory/cpu controllers)",
                    root.display()
                ))
            };
        }
        let make = |controller: &str| -> Option<PathBuf> {
            let base = root.join(controller);
            let base = base.canonicalize().ok()?;
            let dir = base.join(name);
            std::fs::create_dir_all(&dir).ok()?;
            Some(dir)
        };
        let (memory, cpu, cpuacct) = (make("memory"), make("cpu"), make("cpuacct"));
        if memory.is_none() && cpu.is_none() {
            return Cgroups::Unavailable(format!(
                "no writable cgroup v2 or v1 memory/cpu hierarchy under {}",
                root.display()
            ));
        }
        let cpuacct = if cpuacct == cpu { None } else { cpuacct };
        Cgroups::V1 { memory, cpu, cpuacct }
    }

    /// Make the groups of container `id` with its limits.
    pub fn create(&self, id: &str, limits: &Limits) -> std::io::Result<Groups> {
        match self {
            Cgroups::Unavailable(_) => Ok(Groups::default()),
            Cgroups::V2 { parent } => {
                let dir = parent.join(id);
                std::fs::create_dir_all(&dir)?;
                if let Some(m) = limits.memory_bytes {
                    std::fs::write(dir.join("memory.max"), m.to_string())?;
                    // Without swap off a limited process swaps instead of being OOM-killed.
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(c) = limits.cpu_millis {
                    let quota = (c * CFS_PERIOD_US / 1000).max(1000);
                    std::fs::write(dir.join("cpu.max"), format!("{quota} {CFS_PERIOD_US}"))?;
                }
                if let Some(r) = limits.cpu_request_millis {
                    // Kubernetes' shares→weight conversion.
                    let shares = (r * 1024 / 1000).max(2);
                    let weight = 1 + ((shares - 2) * 9999) / 262142;
                    let _ = std::fs::write(dir.join("cpu.weight"), weight.to_string());
                }
                Ok(Groups { version: "v2".into(), dirs: vec![dir] })
            }
            Cgroups::V1 { memory, cpu, cpuacct } => {
                let mut dirs = Vec::new();
                if let Some(parent) = memory {
                    let dir = parent.join(id);
                    std::fs::create_dir_all(&dir)?;
                    if let Some(m) = limits.memory_bytes {
                        std::fs::write(dir.join("memory.limit_in_bytes"), m.to_string())?;
                        let _ = std::fs::write(dir.join("memory.swappiness"), "0");
                    }
                    dirs.push(dir);
                }
                if let Some(parent) = cpu {
                    let dir = parent.join(id);
                    std::fs::create_dir_all(&dir)?;
                    if let Some(c) = limits.cpu_millis {
                        let quota = (c * CFS_PERIOD_US / 1000).max(1000);
                        std::fs::write(dir.join("cpu.cfs_period_us"), CFS_PERIOD_US.to_string())?;
                        std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
                    }
                    if let Some(r) = limits.cpu_request_millis {
                        let _ = std::fs::write(
                            dir.join("cpu.shares"),
                            (r * 1024 / 1000).max(2).to_string(),
                        );
                    }
                    dirs.push(dir);
                }
                if let Some(parent) = cpuacct {
                    let dir = parent.join(id);
                    std::fs::create_dir_all(&dir)?;
                    dirs.push(dir);
                }
                Ok(Groups { version: "v1".into(), dirs })
            }
        }
    }

    /// Why limits are not enforced, if they are not.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            Cgroups::Unavailable(why) => Some(why),
            _ => None,
        }
    }
}

fn enable_controllers(dir: &Path) -> std::io::Result<()> {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers"))?;
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    for c in ["memory", "cpu"] {
        if !available.split_whitespace().any(|a| a == c) {
            return Err(std::io::Error::other(format!("controller {c} not available")));
        }
        if !enabled.split_whitespace().any(|e| e == c) {
            std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"))?;
        }
    }
    Ok(())
}

impl Groups {
    /// Move a process into every group.
    pub fn join(&self, pid: u32) -> std::io::Result<()> {
        for dir in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the kernel's OOM killer killed something in the memory group.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = self.dirs.first() else { return false };
        let file = if self.version == "v2" { "memory.events" } else { "memory.oom_control" };
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else { return false };
        counter(&text, "oom_kill").is_some_and(|n| n > 0)
    }

    /// Usage now, if the groups can tell.
    pub fn stats(&self) -> Option<ContainerStats> {
        let read = |dir: &Path, f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let mut stats = ContainerStats::default();
        match self.version.as_str() {
            "v2" => {
                let dir = self.dirs.first()?;
                let usage: u64 = read(dir, "memory.current")?.trim().parse().ok()?;
                let inactive = counter(&read(dir, "memory.stat")?, "inactive_file").unwrap_or(0);
                stats.memory_working_set_bytes = usage.saturating_sub(inactive);
                let usec = counter(&read(dir, "cpu.stat")?, "usage_usec").unwrap_or(0);
                stats.cpu_usage_core_nanos = usec * 1000;
            }
            "v1" => {
                for dir in &self.dirs {
                    if let Some(u) = read(dir, "memory.usage_in_bytes") {
                        let usage: u64 = u.trim().parse().ok()?;
                        let stat = read(dir, "memory.stat").unwrap_or_default();
                        let inactive = counter(&stat, "total_inactive_file").unwrap_or(0);
                        stats.memory_working_set_bytes = usage.saturating_sub(inactive);
                    }
                    if let Some(u) = read(dir, "cpuacct.usage") {
                        stats.cpu_usage_core_nanos = u.trim().parse().ok()?;
                    }
                }
            }
            _ => return None,
        }
        Some(stats)
    }

    /// Remove the groups (they must be empty: call after the workload ended).
    pub fn remove(&self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `name N` in a flat-keyed cgroup file.
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(name)).then(|| parts.next()?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_name() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(counter(text, "oom_kill"), Some(2));
        assert_eq!(counter(text, "under_oom"), Some(0));
        assert_eq!(counter(text, "missing"), None);
    }

    #[test]
    fn a_fake_v1_tree_gets_limits_written() {
        let root = tempfile::tempdir().unwrap();
        for c in ["memory", "cpu"] {
            std::fs::create_dir_all(root.path().join(c)).unwrap();
        }
        let cg = Cgroups::detect_at(root.path(), "kumo");
        let Cgroups::V1 { memory: Some(_), cpu: Some(_), cpuacct: None } = &cg else {
            panic!("{cg:?}");
        };
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(500),
            cpu_request_millis: Some(250),
        };
        let groups = cg.create("c1", &limits).unwrap();
        let mem = root.path().join("memory").canonicalize().unwrap().join("kumo/c1");
        assert_eq!(std::fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap(), "67108864");
        let cpu = root.path().join("cpu").canonicalize().unwrap().join("kumo/c1");
        assert_eq!(std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap(), "50000");
        assert_eq!(std::fs::read_to_string(cpu.join("cpu.shares")).unwrap(), "256");
        assert_eq!(groups.dirs.len(), 2);
        std::fs::write(mem.join("memory.oom_control"), "oom_kill_disable 0\noom_kill 1\n").unwrap();
        assert!(groups.oom_killed());
    }

    #[test]
    fn no_hierarchy_means_unavailable_with_a_reason() {
        let root = tempfile::tempdir().unwrap();
        let cg = Cgroups::detect_at(root.path(), "kumo");
        assert!(cg.unavailable().is_some_and(|w| w.contains("no writable cgroup")));
    }
}
