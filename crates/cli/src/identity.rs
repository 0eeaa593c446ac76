//! Who is running a command: user name, uid, gid and host, from the process credentials.

pub fn hostname() -> String {
    // Read /proc rather than calling gethostname through libc (no unsafe code).
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            return h.split('.').next().unwrap_or(h).to_string();
        }
    }
    "localhost".to_string()
}

fn status_field(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn uid() -> u32 {
    status_field("Uid:").unwrap_or(0)
}

pub fn gid() -> u32 {
    status_field("Gid:").unwrap_or(0)
}

/// The user name for `uid` from /etc/passwd, else `$USER`, else the number.
pub fn user_name(uid: u32) -> String {
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let mut f = line.split(':');
            let (Some(name), _, Some(id)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if id.parse::<u32>().ok() == Some(uid) {
                return name.to_string();
            }
        }
    }
    std::env::var("USER").unwrap_or_else(|_| uid.to_string())
}

pub fn current() -> crate::sbatch_prep::UserIdentity {
    let uid = uid();
    crate::sbatch_prep::UserIdentity {
        name: user_name(uid),
        uid,
        gid: gid(),
        host: hostname(),
    }
}
