//! Who a job runs as: the password database (`getpwuid_r`), supplementary groups
//! (`getgrouplist`, what `initgroups` would set) and the switch itself, made between fork and
//! exec by the launcher.

use std::ffi::{CStr, CString};
use std::io;

/// A user's entry in the password database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    pub name: String,
    pub home: String,
    pub shell: String,
}

/// Who a job runs as, looked up before its supervisor starts: its account (when the
/// password database has one) and the groups it gets (empty unless the daemon runs as root
/// and switches to the job's user).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobUser {
    pub account: Option<Account>,
    pub groups: Vec<u32>,
}

/// The password database entry of `uid`, when there is one.
pub fn account(uid: u32) -> Option<Account> {
    let mut buf = vec![0u8; 16 * 1024];
    #[allow(unsafe_code)]
    // SAFETY: getpwuid_r fills `pwd` with pointers into `buf`, which outlives their use here;
    // `pwd` is plain data, zero-initialised.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        let text = |p: *const libc::c_char| {
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Some(Account {
            name: text(pwd.pw_name),
            home: text(pwd.pw_dir),
            shell: text(pwd.pw_shell),
        })
    }
}

/// `gid` and every group that lists `user` (getgrouplist(3)).
pub fn groups(user: &str, gid: u32) -> Vec<u32> {
    let Ok(name) = CString::new(user) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut list: Vec<libc::gid_t> = vec![0; usize::try_from(n).unwrap_or(64)];
        let mut count = n;
        #[allow(unsafe_code)]
        // SAFETY: `list` holds `count` entries; getgrouplist writes at most that many and
        // updates `count`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, list.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            list.truncate(usize::try_from(count).unwrap_or(0));
            return list;
        }
        if count <= n || n > 65_536 {
            return vec![gid];
        }
        n = count;
    }
}

/// Sets supplementary groups, gid, then uid of the calling thread: raw system calls, so that it
/// works in a child that shares its parent's memory (glibc's setuid would try to reach every
/// thread it knows of, the parent's) as well as in a forked one. Async-signal-safe; allocates
/// nothing.
pub fn become_user(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: plain system calls; `groups` was allocated before the child started.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
            || libc::syscall(libc::SYS_setgid, gid) != 0
            || libc::syscall(libc::SYS_setuid, uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_an_account_and_its_group() {
        let root = account(0).expect("uid 0 is in the password database");
        assert_eq!(root.name, "root");
        assert!(!root.home.is_empty());
        assert!(groups("root", 0).contains(&0));
    }
}
