//! The private directory's upkeep: the host user's secret (the key of the files'
//! names) and the removal of files no live process uses.

use std::ffi::CString;
use std::io::Read;
use std::path::Path;

use super::files::{errno_text, lock_range, still_named, verify, Fd, ELECTION, IN_USE};
use super::segment::LAYOUT;

/// The secret's file name in the private directory, and its length.
const SECRET: &str = "secret";
const SECRET_LEN: usize = 32;

fn open_at(dir: &Fd, name: &str, flags: libc::c_int) -> Option<Fd> {
    let c = CString::new(name).ok()?;
    // SAFETY: dir.0 is an open directory, c a valid C string.
    let fd = unsafe {
        libc::openat(
            dir.0,
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    (fd >= 0).then_some(Fd(fd))
}

fn unlink_at(dir: &Fd, name: &str) {
    if let Ok(c) = CString::new(name) {
        // SAFETY: dir.0 is an open directory, c a valid C string.
        unsafe {
            libc::unlinkat(dir.0, c.as_ptr(), 0);
        }
    }
}

/// The host user's secret: 32 random bytes in `<dir>/secret` (0600, ours), created
/// by the first process that needs it. It is written to a temporary file and linked
/// into place, so that no process ever reads a half-written secret, and a race
/// between two creators leaves one.
pub(crate) fn secret(dir: &Fd, dir_path: &Path) -> Result<Vec<u8>, String> {
    let shown = dir_path.join(SECRET).display().to_string();
    if open_at(dir, SECRET, libc::O_RDONLY).is_none() {
        create_secret(dir)?;
    }
    let fd = open_at(dir, SECRET, libc::O_RDONLY)
        .ok_or_else(|| format!("cannot open {shown}: {}", errno_text()))?;
    verify(fd.0, &shown, false)?;
    let mut buf = [0u8; SECRET_LEN + 1];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: fd is open; the buffer has room for `buf.len() - got` more bytes.
        let n = unsafe { libc::read(fd.0, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    if got != SECRET_LEN {
        return Err(format!("{shown} is not a {SECRET_LEN}-byte secret"));
    }
    Ok(buf[..SECRET_LEN].to_vec())
}

fn create_secret(dir: &Fd) -> Result<(), String> {
    let mut bytes = [0u8; SECRET_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = format!(".{SECRET}-{}-{nanos}", std::process::id());
    let fd = open_at(dir, &tmp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .ok_or_else(|| format!("cannot create the secret: {}", errno_text()))?;
    // SAFETY: fd is open for writing; bytes is SECRET_LEN bytes long.
    let written = unsafe { libc::write(fd.0, bytes.as_ptr().cast(), SECRET_LEN) };
    drop(fd);
    let linked = written == SECRET_LEN as isize && {
        let (from, to) = (CString::new(tmp.as_str()), CString::new(SECRET));
        match (from, to) {
            // SAFETY: dir.0 is an open directory; both names are valid C strings.
            // linkat fails with EEXIST when another process linked its secret first:
            // then that one is used.
            (Ok(f), Ok(t)) => unsafe {
                libc::linkat(dir.0, f.as_ptr(), dir.0, t.as_ptr(), 0) == 0
                    || std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST)
            },
            _ => false,
        }
    };
    unlink_at(dir, &tmp);
    if linked {
        Ok(())
    } else {
        Err(format!("cannot create the secret: {}", errno_text()))
    }
}

/// The segment key a file name stands for (its first 16 hex digits, see `key::key`),
/// for files of the current layout.
fn key_of(stem: &str) -> Option<u64> {
    let hex = stem.strip_suffix(&format!("-v{LAYOUT}"))?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut head = [0u8; 8];
    for (i, b) in head.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(u64::from_le_bytes(head) | 1)
}

/// Removes the files of configurations that no live process uses: those whose
/// in-use byte (and election byte) nobody holds. Safe against a process that opens
/// them meanwhile: the write lock is held while unlinking, and a process only uses
/// files after read-locking the in-use byte of the very file the name still stands
/// for (`files::open_in_use`). Files of this process's own clusters are skipped (its
/// POSIX locks would not conflict with its own, and closing the fd would drop them).
/// Returns how many configurations were removed.
pub(crate) fn sweep(dir: &Fd, dir_path: &Path, claimed: &dyn Fn(u64) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir_path) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
            continue;
        };
        let Some(key) = key_of(stem) else {
            continue;
        };
        if claimed(key) {
            continue;
        }
        let lock_name = format!("{stem}.lock");
        let Some(fd) = open_at(dir, &lock_name, libc::O_RDWR) else {
            continue;
        };
        let shown = dir_path.join(&lock_name).display().to_string();
        if verify(fd.0, &shown, false).is_err()
            || !lock_range(fd.0, libc::F_WRLCK as libc::c_short, ELECTION, IN_USE + 1)
            || !still_named(dir, fd.0, &lock_name)
        {
            continue;
        }
        // Nobody uses them, and nobody can start to while we hold the lock.
        unlink_at(dir, &format!("{stem}.shm"));
        unlink_at(dir, &lock_name);
        removed += 1;
        drop(fd);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private_dir(tag: &str) -> (Fd, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("rr-hk-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).expect("temp dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let c = CString::new(path.to_str().expect("utf-8")).expect("c path");
        // SAFETY: c is a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        assert!(fd >= 0);
        (Fd(fd), path)
    }

    #[test]
    fn the_secret_is_made_once_private_and_kept() {
        let (dir, path) = private_dir("secret");
        let a = secret(&dir, &path).expect("created");
        let b = secret(&dir, &path).expect("read");
        assert_eq!(a.len(), SECRET_LEN);
        assert_eq!(a, b);
        let meta = std::fs::metadata(path.join(SECRET)).expect("secret file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(&path).expect("dir").flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn sweep_removes_unused_files_but_not_claimed_ones() {
        let (dir, path) = private_dir("sweep");
        let unused = format!("{}-v{LAYOUT}", "ab".repeat(16));
        let mine = format!("{}-v{LAYOUT}", "cd".repeat(16));
        let other_layout = format!("{}-v0", "ef".repeat(16));
        for stem in [&unused, &mine, &other_layout] {
            for ext in ["lock", "shm"] {
                let p = path.join(format!("{stem}.{ext}"));
                std::fs::write(&p, b"").expect("file");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
        }
        let mine_key = key_of(&mine).expect("key");
        assert_eq!(sweep(&dir, &path, &|k| k == mine_key), 1);
        assert!(!path.join(format!("{unused}.lock")).exists());
        assert!(!path.join(format!("{unused}.shm")).exists());
        assert!(path.join(format!("{mine}.shm")).exists());
        assert!(path.join(format!("{other_layout}.shm")).exists());
        let _ = std::fs::remove_dir_all(&path);
    }
}
