//! What this node has: CPUs, memory, boot time, OS and architecture. Read from the OS once at
//! start; CPUs and memory can be overridden by configuration, so that several daemons on one
//! machine can pose as distinct, smaller nodes.

use std::path::Path;

use thiserror::Error;

pub mod gpu;

/// The resources and identity a node registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub cpus: u32,
    pub real_memory_mb: u64,
    /// Unix time of the last boot (`/proc/stat` `btime`); 0 when unknown.
    pub boot_time: i64,
    /// `uname` sysname and release, e.g. `Linux 6.8.0-45-generic`.
    pub os: String,
    /// e.g. `x86_64`.
    pub arch: String,
    pub gpus: Vec<gpu::GpuInfo>,
}

#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error(
        "cannot read the memory size from /proc/meminfo ({0}); set the node's memory explicitly"
    )]
    Memory(String),
}

/// True when `path` lies on a tmpfs mounted without `noexec` (`/proc/self/mountinfo`: the
/// mount with the longest mount point that contains `path`).
pub fn is_exec_tmpfs(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    mount_allows_exec_tmpfs(&text, path)
}

fn mount_allows_exec_tmpfs(mountinfo: &str, path: &Path) -> bool {
    let mut best: Option<(usize, bool)> = None;
    for line in mountinfo.lines() {
        // `id parent dev root mount_point options [optional…] - fstype source super_options`
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount_point), Some(options)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let fstype = fields.get(dash + 1).copied().unwrap_or("");
        // Mount points escape spaces and the like as octal (`\040`): such mounts never match.
        if !path.starts_with(mount_point) {
            continue;
        }
        let depth = Path::new(mount_point).components().count();
        let ok = fstype == "tmpfs" && !options.split(',').any(|o| o == "noexec");
        // A later line with the same mount point is mounted over the earlier one.
        if best.is_none_or(|(d, _)| depth >= d) {
            best = Some((depth, ok));
        }
    }
    best.is_some_and(|(_, ok)| ok)
}

/// Makes `dir` (mode 0700) unless it exists, then checks it is a directory (not a link)
/// owned by this process's user with no access for others: a directory someone else made
/// first in a shared place like `/dev/shm` must not hold job scripts.
pub fn own_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let me = std::fs::metadata("/proc/self")?.uid();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "not a directory of uid {me} with mode 0700 (uid {}, mode {:o})",
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Reads the node's resources from the OS, taking each override where given.
pub fn discover(
    cpus: Option<u32>,
    real_memory_mb: Option<u64>,
    fake_gpus: Option<u32>,
) -> Result<Discovered, DiscoveryError> {
    let cpus = match cpus {
        Some(n) => n,
        None => usable_cpus(),
    };
    let real_memory_mb = match real_memory_mb {
        Some(mb) => mb,
        None => {
            let text = std::fs::read_to_string("/proc/meminfo")
                .map_err(|e| DiscoveryError::Memory(e.to_string()))?;
            parse_meminfo_total_mb(&text)
                .ok_or_else(|| DiscoveryError::Memory("no MemTotal line".into()))?
        }
    };
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_boot_time(&t))
        .unwrap_or(0);
    Ok(Discovered {
        cpus,
        real_memory_mb,
        boot_time,
        os: os_name(),
        arch: std::env::consts::ARCH.to_string(),
        gpus: gpu::discover(fake_gpus),
    })
}

/// CPUs this process may run on. On Linux `available_parallelism` counts the
/// `sched_getaffinity` mask (and honours a cgroup CPU quota).
fn usable_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// `uname -sr`. The kernel exposes the same strings as `uname(2)` under /proc/sys/kernel, which
/// needs no `unsafe`; elsewhere fall back to the compile-time OS name.
fn os_name() -> String {
    let read = |name: &str| {
        std::fs::read_to_string(Path::new("/proc/sys/kernel").join(name))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    match (read("ostype"), read("osrelease")) {
        (Some(sysname), Some(release)) => format!("{sysname} {release}"),
        (Some(sysname), None) => sysname,
        _ => std::env::consts::OS.to_string(),
    }
}

/// `MemTotal:       16318412 kB` → MiB.
pub fn parse_meminfo_total_mb(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        let unit = parts.next().unwrap_or("kB");
        let kib = match unit {
            "kB" | "KB" | "KiB" => value,
            "mB" | "MB" | "MiB" => value.saturating_mul(1024),
            "B" => value / 1024,
            _ => return None,
        };
        Some(kib / 1024)
    })
}

/// `btime 1712345678` in /proc/stat.
pub fn parse_boot_time(stat: &str) -> Option<i64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_dirs_need_a_tmpfs_that_allows_exec() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw
24 23 0:20 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
25 22 0:21 / /run rw,nosuid,nodev,noexec,relatime shared:4 - tmpfs tmpfs rw,mode=755
26 22 0:22 / /tmp/x rw master:7 - tmpfs tmpfs rw
27 22 0:23 / /tmp/x rw,noexec master:8 - tmpfs tmpfs rw
";
        assert!(mount_allows_exec_tmpfs(info, Path::new("/dev/shm")));
        assert!(mount_allows_exec_tmpfs(info, Path::new("/dev/shm/a/b")));
        assert!(!mount_allows_exec_tmpfs(info, Path::new("/dev/shmx")));
        assert!(
            !mount_allows_exec_tmpfs(info, Path::new("/run/drover")),
            "noexec"
        );
        assert!(
            !mount_allows_exec_tmpfs(info, Path::new("/var/lib")),
            "ext4"
        );
        assert!(
            !mount_allows_exec_tmpfs(info, Path::new("/tmp/x")),
            "mounted over"
        );
        assert!(!mount_allows_exec_tmpfs("", Path::new("/dev/shm")));
    }

    #[test]
    fn a_private_dir_is_made_or_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("rt");
        own_private_dir(&dir).expect("made");
        own_private_dir(&dir).expect("made again");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(own_private_dir(&dir).is_err(), "open to others");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).expect("symlink");
        assert!(own_private_dir(&link).is_err(), "a link");
    }

    #[test]
    fn meminfo_total_in_mib() {
        let text = "MemTotal:       16318412 kB\nMemFree:          123 kB\n";
        assert_eq!(parse_meminfo_total_mb(text), Some(15935));
        assert_eq!(parse_meminfo_total_mb("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total_mb("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn boot_time_from_stat() {
        let text = "cpu  1 2 3\nintr 5\nbtime 1712345678\nprocesses 9\n";
        assert_eq!(parse_boot_time(text), Some(1_712_345_678));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn overrides_win_and_the_os_answers_the_rest() {
        let d = discover(Some(3), Some(1234), Some(2)).expect("discover with overrides");
        assert_eq!((d.cpus, d.real_memory_mb, d.gpus.len()), (3, 1234, 2));
        assert!(!d.os.is_empty() && !d.arch.is_empty());

        let d = discover(None, None, None).expect("discover from the OS");
        assert!(d.cpus >= 1);
        assert!(d.real_memory_mb > 0);
        assert!(d.boot_time > 0, "btime read from /proc/stat");
        assert!(d.os.starts_with("Linux "), "{}", d.os);
    }
}
