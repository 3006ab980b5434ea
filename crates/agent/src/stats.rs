//! The node's own usage for the Summary API (`kubectl top nodes`): CPU time from `/proc/stat`,
//! memory from `/proc/meminfo`, computed as kubelet (cAdvisor) reports them for the root cgroup.

use chrono::{DateTime, Utc};
use std::io;

/// `/proc/stat` counts in USER_HZ, which the kernel fixes at 100 for user space on the
/// architectures kumo runs on (x86, arm, riscv), whatever the kernel's own tick rate.
const USER_HZ: u64 = 100;

/// CPU of the whole node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCpu {
    /// CPU time used since boot by all cores (busy time, not idle or iowait), in nanoseconds.
    pub usage_core_nanos: u64,
    /// When the node booted.
    pub boot_time: Option<DateTime<Utc>>,
}

/// Memory of the whole node, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeMemory {
    /// `MemTotal`.
    pub capacity_bytes: u64,
    /// Used memory: `MemTotal - MemFree`.
    pub usage_bytes: u64,
    /// Usage less the inactive file cache (what the kernel cannot simply drop).
    pub working_set_bytes: u64,
    /// Capacity less the working set.
    pub available_bytes: u64,
}

/// Read `/proc/stat`.
pub fn node_cpu() -> io::Result<NodeCpu> {
    Ok(parse_stat(&std::fs::read_to_string("/proc/stat")?))
}

/// Read `/proc/meminfo`.
pub fn node_memory() -> io::Result<NodeMemory> {
    Ok(parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?))
}

/// Parse the text of `/proc/stat`.
pub fn parse_stat(text: &str) -> NodeCpu {
    let mut cpu = NodeCpu::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
                let at = |i: usize| v.get(i).copied().unwrap_or(0);
                // user nice system idle iowait irq softirq steal (guest time is already part
                // of user and nice).
                let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
                cpu.usage_core_nanos = busy.saturating_mul(1_000_000_000 / USER_HZ);
            }
            Some("btime") => {
                cpu.boot_time = fields
                    .next()
                    .and_then(|s| s.parse::<i64>().ok())
                    .and_then(|secs| DateTime::from_timestamp(secs, 0));
            }
            _ => {}
        }
    }
    cpu
}

/// Parse the text of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> NodeMemory {
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = field("MemTotal");
    let usage = total.saturating_sub(field("MemFree"));
    let working_set = usage.saturating_sub(field("Inactive(file)"));
    NodeMemory {
        capacity_bytes: total,
        usage_bytes: usage,
        working_set_bytes: working_set,
        available_bytes: total.saturating_sub(working_set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let text =
            "cpu  100 20 30 1000 50 5 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nbtime 1700000000\n";
        let cpu = parse_stat(text);
        assert_eq!(cpu.usage_core_nanos, 160 * 10_000_000);
        assert_eq!(cpu.boot_time.map(|t| t.timestamp()), Some(1_700_000_000));
    }

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nInactive(file):  100 kB\n";
        let m = parse_meminfo(text);
        assert_eq!(m.capacity_bytes, 1_024_000);
        assert_eq!(m.usage_bytes, 800 * 1024);
        assert_eq!(m.working_set_bytes, 700 * 1024);
        assert_eq!(m.available_bytes, 300 * 1024);
    }

    #[test]
    fn reads_this_machine() {
        let cpu = node_cpu().expect("/proc/stat");
        assert!(cpu.usage_core_nanos > 0);
        let mem = node_memory().expect("/proc/meminfo");
        assert!(mem.capacity_bytes > 0 && mem.working_set_bytes <= mem.capacity_bytes);
    }
}
