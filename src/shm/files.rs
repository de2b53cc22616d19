//! The shared files of one cluster: a private directory, `<key>.lock` and `<key>.shm`
//! (the segment, mmap'd). Two POSIX record locks on `<key>.lock` (released by the
//! kernel when their holder dies, not inherited by `fork()` children): byte 0 is the
//! election (the leader's write lock), byte 1 says "in use" (a read lock held by every
//! process using the files, so that `housekeeping::sweep` never removes them under
//! it). Everything is checked after opening: ours (same uid), no group or other
//! permissions, no symlink.

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The directory of the shared files: `REPLICA_ROUTER_SHARE_DIR` if set (tests,
/// operators), else `$XDG_RUNTIME_DIR/replica-router` when usable, else
/// `/tmp/replica-router-<uid>`.
fn candidates() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("REPLICA_ROUTER_SHARE_DIR").filter(|d| !d.is_empty()) {
        return vec![PathBuf::from(dir)];
    }
    let mut out = Vec::new();
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        out.push(PathBuf::from(xdg).join("replica-router"));
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    out.push(PathBuf::from(format!("/tmp/replica-router-{uid}")));
    out
}

pub(super) fn errno_text() -> String {
    std::io::Error::last_os_error().to_string()
}

fn c_path(p: &std::path::Path) -> Result<CString, String> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("bad path {}", p.display()))
}

/// A file descriptor closed on drop.
pub(crate) struct Fd(pub libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor and close it once.
        unsafe {
            libc::close(self.0);
        }
    }
}

/// Checks that an open file is of the expected type, ours, and private.
pub(super) fn verify(fd: libc::c_int, what: &str, want_dir: bool) -> Result<libc::stat, String> {
    // SAFETY: an all-zero stat is a valid value, filled by fstat below.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; st is a valid pointer to a stat on our stack.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(format!("cannot stat {what}: {}", errno_text()));
    }
    let kind = st.st_mode & libc::S_IFMT;
    let want = if want_dir {
        libc::S_IFDIR
    } else {
        libc::S_IFREG
    };
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if kind != want {
        return Err(format!(
            "{what} is not a {}",
            if want_dir {
                "directory"
            } else {
                "regular file"
            }
        ));
    }
    if st.st_uid != uid {
        return Err(format!("{what} is owned by uid {}, not {uid}", st.st_uid));
    }
    if st.st_mode & 0o077 != 0 {
        return Err(format!(
            "{what} has group/other permissions ({:o})",
            st.st_mode & 0o777
        ));
    }
    Ok(st)
}

/// Opens (creating it 0700 if needed) and checks the directory; returns its fd.
pub(crate) fn open_dir() -> Result<(Fd, PathBuf), String> {
    let mut errors = Vec::new();
    for dir in candidates() {
        let path = c_path(&dir)?;
        // SAFETY: path is a valid C string; mkdir does not keep it.
        unsafe {
            libc::mkdir(path.as_ptr(), 0o700);
        }
        // SAFETY: as above; O_NOFOLLOW refuses a symlink in the last component.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            errors.push(format!("{}: {}", dir.display(), errno_text()));
            continue;
        }
        let fd = Fd(fd);
        match verify(fd.0, &dir.display().to_string(), true) {
            Ok(_) => return Ok((fd, dir)),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; "))
}

fn open_in(dir: &Fd, dir_path: &std::path::Path, name: &str) -> Result<Fd, String> {
    let c = CString::new(name).map_err(|_| format!("bad file name {name}"))?;
    // SAFETY: dir.0 is an open directory, c a valid C string.
    let fd = unsafe {
        libc::openat(
            dir.0,
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    let shown = dir_path.join(name).display().to_string();
    if fd < 0 {
        return Err(format!("cannot open {shown}: {}", errno_text()));
    }
    let fd = Fd(fd);
    verify(fd.0, &shown, false)?;
    Ok(fd)
}

/// The byte of `<key>.lock` whose write lock is the lead.
pub(super) const ELECTION: libc::off_t = 0;
/// The byte of `<key>.lock` read-locked by every process using the files.
pub(super) const IN_USE: libc::off_t = 1;

/// Sets (or, with `F_UNLCK`, drops) a record lock on `len` bytes from `start`,
/// without waiting; true on success.
pub(super) fn lock_range(
    fd: libc::c_int,
    kind: libc::c_short,
    start: libc::off_t,
    len: libc::off_t,
) -> bool {
    // SAFETY: an all-zero flock is valid; the fields that matter are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    // SAFETY: fl is a valid flock on our stack; fd is an open descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETLK, &fl) == 0 }
}

/// Whether `fd` is still the file named `name` in `dir` (not unlinked or replaced).
pub(super) fn still_named(dir: &Fd, fd: libc::c_int, name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: all-zero stats are valid values, filled in below.
    let (mut a, mut b): (libc::stat, libc::stat) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: fd and dir.0 are open; c is a valid C string; a, b are on our stack.
    unsafe {
        libc::fstat(fd, &mut a) == 0
            && libc::fstatat(dir.0, c.as_ptr(), &mut b, libc::AT_SYMLINK_NOFOLLOW) == 0
            && a.st_ino == b.st_ino
            && a.st_dev == b.st_dev
    }
}

/// Opens (creating) the lock file `name` and read-locks its in-use byte. A sweep may
/// hold that byte for a moment and unlink the file: then try again, on the new file.
fn open_in_use(dir: &Fd, dir_path: &std::path::Path, name: &str) -> Result<Fd, String> {
    for _ in 0..200 {
        let fd = open_in(dir, dir_path, name)?;
        if lock_range(fd.0, libc::F_RDLCK as libc::c_short, IN_USE, 1)
            && still_named(dir, fd.0, name)
        {
            return Ok(fd);
        }
        drop(fd);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(format!(
        "cannot mark {} in use",
        dir_path.join(name).display()
    ))
}

/// The mapped segment and the election lock of one cluster in this process.
pub(crate) struct Files {
    /// The lock file's fd, -1 once closed (`close_lock`).
    lock: AtomicI32,
    _shm: Fd,
    ptr: *mut libc::c_void,
    len: usize,
    pub path: PathBuf,
}

// SAFETY: the mapping is only accessed through atomics (`words`), and the fds are
// plain integers; both stay valid until drop.
unsafe impl Send for Files {}
// SAFETY: as above.
unsafe impl Sync for Files {}

impl Files {
    /// Opens (creating) `<key>.lock`, marks it in use, and opens `<key>.shm`, sized
    /// for `words` words, in the directory `dir`.
    pub(crate) fn open(
        dir: &Fd,
        dir_path: &std::path::Path,
        key: &str,
        words: usize,
    ) -> Result<Files, String> {
        let lock = open_in_use(dir, dir_path, &format!("{key}.lock"))?;
        let name = format!("{key}.shm");
        let shm = open_in(dir, dir_path, &name)?;
        let len = words * 8;
        let st = verify(shm.0, &name, false)?;
        if (st.st_size as u64) < len as u64 {
            // Grow only, never shrink: a smaller file would fault mapped readers.
            // SAFETY: shm is an open regular file of ours.
            if unsafe { libc::ftruncate(shm.0, len as libc::off_t) } != 0 {
                return Err(format!("cannot size {name}: {}", errno_text()));
            }
        }
        // SAFETY: a new shared read-write mapping of `len` bytes of an open file that
        // is at least that long; the kernel picks the (page-aligned) address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                shm.0,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("cannot map {name}: {}", errno_text()));
        }
        let lock_fd = lock.0;
        std::mem::forget(lock);
        Ok(Files {
            lock: AtomicI32::new(lock_fd),
            _shm: shm,
            ptr,
            len,
            path: dir_path.join(name),
        })
    }

    /// The segment, as words.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so 8-byte aligned), `len` bytes long,
        // valid until drop, and every access goes through atomics, which is how
        // memory shared with other processes must be read and written.
        unsafe { std::slice::from_raw_parts(self.ptr as *const AtomicU64, self.len / 8) }
    }

    fn set_lock(&self, kind: libc::c_short) -> bool {
        let fd = self.lock.load(Ordering::SeqCst);
        fd >= 0 && lock_range(fd, kind, ELECTION, 1)
    }

    /// Takes the election lock without waiting: true if this process now leads.
    pub(crate) fn try_lead(&self) -> bool {
        self.set_lock(libc::F_WRLCK as libc::c_short)
    }

    /// Gives the lead up for good (followers take it over at their next try):
    /// closes the lock file. Done once, at stop, and before another `Files` of the
    /// same key may exist in this process: closing any fd of the lock file drops
    /// every record lock the process holds on it.
    pub(crate) fn close_lock(&self) {
        let fd = self.lock.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: we own this fd, and the swap above makes this the only close.
            unsafe {
                libc::close(fd);
            }
        }
    }

    /// In a child after `fork()`: unmaps and closes what was inherited (the lock was
    /// not inherited, so nothing is released in the parent).
    ///
    /// # Safety
    /// Nothing may use `self` afterwards, and it must never be dropped (forget it).
    pub(crate) unsafe fn close_inherited(&self) {
        // SAFETY: the caller guarantees no further use; ptr/len are our mapping.
        unsafe {
            libc::munmap(self.ptr, self.len);
            let fd = self.lock.load(Ordering::SeqCst);
            if fd >= 0 {
                libc::close(fd);
            }
            libc::close(self._shm.0);
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        self.close_lock();
        // SAFETY: ptr/len are the mapping made in `open`, unmapped once; no reference
        // from `words` outlives `self`.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}
