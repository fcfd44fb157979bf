//! errno numbers → their symbolic names, for `exec_failure.errno`.
//!
//! The numbers come from `libc`, built for the architecture the agent runs on, which is the
//! kernel's: errno values differ between architectures (e.g. MIPS), names do not.

/// The symbolic name of a positive errno, `E<number>` for one not in the table.
#[must_use]
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ELIBACC => "ELIBACC",
        libc::ELIBBAD => "ELIBBAD",
        libc::ELIBMAX => "ELIBMAX",
        libc::ELIBEXEC => "ELIBEXEC",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESTALE => "ESTALE",
        libc::EDQUOT => "EDQUOT",
        libc::EKEYREJECTED => "EKEYREJECTED",
        other => return format!("E{other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::errno_name;

    #[test]
    fn names_the_exec_errnos_and_falls_back_to_the_number() {
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(errno_name(libc::EACCES), "EACCES");
        assert_eq!(errno_name(libc::ENOEXEC), "ENOEXEC");
        assert_eq!(errno_name(libc::E2BIG), "E2BIG");
        assert_eq!(errno_name(libc::ETXTBSY), "ETXTBSY");
        assert_eq!(errno_name(4095), "E4095");
        assert_eq!(errno_name(0), "E0");
    }
}
