//! Starting and stopping the local cluster's processes (`drover up`, `drover restart`,
//! `drover bench`): one log file and one pid file per process under the cluster directory.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A process of the local cluster: `ctld-<id>` or `noded-<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Ctld(u64),
    Noded(String),
}

impl Role {
    pub fn label(&self) -> String {
        match self {
            Role::Ctld(id) => format!("ctld-{id}"),
            Role::Noded(name) => format!("noded-{name}"),
        }
    }

    pub fn parse(label: &str) -> Option<Role> {
        if let Some(id) = label.strip_prefix("ctld-") {
            return id.parse().ok().map(Role::Ctld);
        }
        label
            .strip_prefix("noded-")
            .filter(|n| !n.is_empty())
            .map(|n| Role::Noded(n.to_string()))
    }
}

pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn config(&self) -> PathBuf {
        self.dir.join("drover.toml")
    }
    pub fn pid_file(&self, role: &Role) -> PathBuf {
        self.dir.join("run").join(format!("{}.pid", role.label()))
    }
    pub fn log_file(&self, role: &Role) -> PathBuf {
        self.dir.join("log").join(format!("{}.log", role.label()))
    }
    pub fn state_dir(&self, role: &Role) -> PathBuf {
        self.dir.join("state").join(role.label())
    }
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }
}

/// Starts one process of the cluster on its existing state; writes its pid file.
pub fn spawn(layout: &Layout, role: &Role, detach: bool) -> std::io::Result<Child> {
    std::fs::create_dir_all(layout.dir.join("run"))?;
    std::fs::create_dir_all(layout.dir.join("log"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.log_file(role))?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    // Run as `drover`, whatever link started us.
    cmd.arg0("drover");
    match role {
        Role::Ctld(id) => cmd.args(["ctld", "--config"]).arg(layout.config()).args([
            "--id",
            &id.to_string(),
            "--data-dir",
        ]),
        Role::Noded(name) => cmd.args(["noded", "--config"]).arg(layout.config()).args([
            "--name",
            name,
            "--state-dir",
        ]),
    };
    cmd.arg(layout.state_dir(role));
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if detach {
        cmd.process_group(0);
    }
    let child = cmd.spawn()?;
    std::fs::write(layout.pid_file(role), format!("{}\n", child.id()))?;
    Ok(child)
}

pub fn read_pid(layout: &Layout, role: &Role) -> Option<i32> {
    std::fs::read_to_string(layout.pid_file(role))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Is `pid` running? A zombie (killed, not yet reaped by its parent) is not.
pub fn alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state is the first field after the parenthesised command name.
    !matches!(
        stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next()),
        Some(Some('Z' | 'X'))
    )
}

pub fn signal(pid: i32, sig: nix::sys::signal::Signal) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok()
}

/// Every role with a pid file.
pub fn known_roles(layout: &Layout) -> Vec<Role> {
    let Ok(dir) = std::fs::read_dir(layout.dir.join("run")) else {
        return Vec::new();
    };
    let mut roles: Vec<Role> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pid"))
                .and_then(Role::parse)
        })
        .collect();
    roles.sort_by_key(|r| r.label());
    roles
}
