//! Memory the process can still take: what the kernel reports available,
//! lowered by the headroom of the process's memory cgroup (a container's
//! limit), so that a call can refuse or shrink work that would not fit
//! instead of being killed by the OOM killer halfway.

use std::path::{Path, PathBuf};

/// Bytes available to this process, `None` where the system does not say
/// (not Linux).
pub fn available_bytes() -> Option<u64> {
    #[cfg(test)]
    if let Some(pretend) = PRETEND.with(|p| p.get()) {
        return pretend;
    }
    let host = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| mem_available(&s));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| cgroup_headroom(&s, Path::new("/sys/fs/cgroup")));
    match (host, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
thread_local! {
    static PRETEND: std::cell::Cell<Option<Option<u64>>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with [`available_bytes`] answering `bytes` on this thread
/// (tests of the checks that refuse work that would not fit).
#[cfg(test)]
pub(crate) fn pretend_available<R>(bytes: Option<u64>, f: impl FnOnce() -> R) -> R {
    PRETEND.with(|p| p.set(Some(bytes)));
    let out = f();
    PRETEND.with(|p| p.set(None));
    out
}

/// `bytes` as GiB with one decimal, for messages ("1.9 GiB").
pub fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kb.checked_mul(1024)
}

/// The memory limit of this process's cgroup (the least over it and its
/// ancestors: a container's limit), `None` where none is set.
pub fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_levels(&own, Path::new("/sys/fs/cgroup"))
        .into_iter()
        .map(|(limit, _)| limit)
        .min()
}

/// The least headroom (limit − usage) over the memory cgroups a
/// `/proc/self/cgroup` text names and their ancestors, under `root` (the
/// cgroup mount); `None` where no level sets a limit.
fn cgroup_headroom(own: &str, root: &Path) -> Option<u64> {
    cgroup_levels(own, root)
        .into_iter()
        .map(|(limit, usage)| limit.saturating_sub(usage))
        .min()
}

/// (limit, usage) of every level that sets a limit: v2 (`memory.max`,
/// `memory.current`) or v1 (the `memory` hierarchy). A path that does not
/// exist under the mount (a container's namespaced view) leaves the
/// mount's own files, which are then the container's.
fn cgroup_levels(own: &str, root: &Path) -> Vec<(u64, u64)> {
    let mut levels = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (base, limit, usage) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                root.join("memory"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            continue;
        };
        for dir in ancestors(&base, path) {
            // "max" (v2, no limit) does not parse: that level is skipped.
            if let (Some(l), Some(u)) = (read_u64(&dir.join(limit)), read_u64(&dir.join(usage))) {
                levels.push((l, u));
            }
        }
    }
    levels
}

/// `base/path`, then each parent up to `base` itself.
fn ancestors(base: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = vec![base.to_path_buf()];
    let mut at = base.to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at = at.join(part);
        dirs.push(at.clone());
    }
    dirs
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available_in_bytes() {
        let text = "MemTotal:       24577004 kB\nMemFree:        22000000 kB\n\
                    MemAvailable:   24315004 kB\nBuffers:  1 kB\n";
        assert_eq!(mem_available(text), Some(24_315_004 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn cgroup_headroom_is_the_least_over_the_levels_of_v1_and_v2() {
        let root = std::env::temp_dir().join(format!("rg-cgroup-{}", std::process::id()));
        let write = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        // v2: the job's own cgroup has no limit ("max"); its parent allows
        // 8 GiB and uses 5 GiB.
        write("memory.max", "max\n");
        write("svc/memory.max", &format!("{}\n", 8u64 << 30));
        write("svc/memory.current", &format!("{}\n", 5u64 << 30));
        write("svc/job/memory.max", "max\n");
        write("svc/job/memory.current", "1000\n");
        assert_eq!(cgroup_headroom("0::/svc/job\n", &root), Some(3 << 30));
        let limits = |own: &str| cgroup_levels(own, &root).into_iter().map(|l| l.0).min();
        assert_eq!(limits("0::/svc/job\n"), Some(8 << 30));
        // v1: the memory hierarchy, usage above the limit counts as none.
        write("memory/pod/memory.limit_in_bytes", "1000\n");
        write("memory/pod/memory.usage_in_bytes", "1500\n");
        let v1 = "5:cpu,cpuacct:/pod\n4:memory:/pod\n";
        assert_eq!(cgroup_headroom(v1, &root), Some(0));
        // Both at once: the least.
        assert_eq!(
            cgroup_headroom(&format!("{v1}0::/svc/job\n"), &root),
            Some(0)
        );
        // No memory controller, or no limit anywhere.
        assert_eq!(cgroup_headroom("5:cpu:/pod\n", &root), None);
        assert_eq!(cgroup_headroom("0::/\n", &root), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn this_machine_reports_some_memory() {
        if cfg!(target_os = "linux") {
            assert!(available_bytes().is_some_and(|b| b > 0));
        }
    }
}
