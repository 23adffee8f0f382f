//! Honest files: sanitized names, partial files under a name that says so, mode 0600,
//! `create_new` (never truncates, never follows a symlink), and publication under the
//! final name only once the data is synced, without ever replacing an existing file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Suffix of a file still being received (or left by an interrupted transfer).
pub const PARTIAL_SUFFIX: &str = ".stt-partial";
/// How many `name-N.ext` alternatives `publish_unique` tries.
const MAX_ALTERNATIVES: u32 = 10_000;

/// A file name from the wire made safe: its last path component only (`/` and `\` both
/// separate), no control characters, no `.` or `..`, no leading dots (so neither a hidden
/// file nor a name that looks like ours), at most 200 bytes. `None` if nothing is left.
pub fn sanitize_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().trim_start_matches('.').trim();
    if clean.is_empty() || clean.ends_with(PARTIAL_SUFFIX) {
        return None;
    }
    let mut end = clean.len().min(200);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    Some(clean[..end].to_string())
}

/// Opens a new file for writing: fails if anything (a file, a symlink, a dangling
/// symlink) exists at `path`; mode 0600 on Unix.
pub fn create_new(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

fn random_tag() -> String {
    stt_tokio::random_seed_bytes()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// A file being received: `NAME.RANDOM.stt-partial` next to its final place. Removed when
/// dropped unless it was published, so an interrupted transfer leaves nothing; if the process
/// is killed outright the name still says it is partial.
pub struct Partial {
    path: PathBuf,
    done: bool,
    /// Kept when dropped unpublished (a resumable transfer's partial file).
    keep: bool,
    /// Held while a resumable partial file is in use by a transfer.
    _lock: Option<ResumeLock>,
}

/// Resumable partial files in use by a transfer of this process.
static IN_USE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A resumable partial file's path, marked in use until dropped.
struct ResumeLock(PathBuf);

impl ResumeLock {
    fn take(path: &Path) -> Option<ResumeLock> {
        let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        if in_use.iter().any(|p| p == path) {
            return None;
        }
        in_use.push(path.to_path_buf());
        Some(ResumeLock(path.to_path_buf()))
    }
}

impl Drop for ResumeLock {
    fn drop(&mut self) {
        IN_USE.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p != &self.0);
    }
}

impl Partial {
    /// Creates the partial file for `base` in `dir`.
    pub fn create(dir: &Path, base: &str) -> io::Result<(Partial, File)> {
        for _ in 0..8 {
            let path = dir.join(format!("{base}.{}{PARTIAL_SUFFIX}", random_tag()));
            match create_new(&path) {
                Ok(f) => return Ok((Partial { path, done: false, keep: false, _lock: None }, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "cannot find a free temporary name"))
    }

    /// Opens (or creates) the partial file of a resumable transfer, `dir/BASE.TAG.stt-partial`,
    /// and returns it with the length it already has. It is kept when dropped unpublished, so
    /// that a later try can continue it. Fails with `WouldBlock` if another transfer of this
    /// process uses it, and refuses anything but a regular file (a symlink is not followed:
    /// the opened file must be the one `lstat` sees at the path).
    pub fn open_resumable(dir: &Path, base: &str, tag: &str) -> io::Result<(Partial, File, u64)> {
        let path = dir.join(format!("{base}.{tag}{PARTIAL_SUFFIX}"));
        let lock = ResumeLock::take(&path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::WouldBlock, "another transfer of this file is in progress"))?;
        let file = match create_new(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let before = std::fs::symlink_metadata(&path)?;
                if !before.file_type().is_file() {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the partial file's name is taken"));
                }
                let f = OpenOptions::new().read(true).write(true).open(&path)?;
                let now = f.metadata()?;
                if !same_file(&before, &now) {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the partial file changed while opened"));
                }
                if extra_links(&now) {
                    // Another name shares these bytes: a file published by a transfer that was
                    // cut between its link and its unlink, or a link someone else made. Writing
                    // here would change that file too: start afresh under this name instead.
                    lock_file(&f)?;
                    drop(f);
                    std::fs::remove_file(&path)?;
                    create_new(&path)?
                } else {
                    f
                }
            }
            Err(e) => return Err(e),
        };
        // Also held by every clone of the file (the async writer's, whose last write may
        // still be under way after its transfer failed) and against other processes.
        lock_file(&file)?;
        let len = file.metadata()?.len();
        Ok((Partial { path, done: false, keep: true, _lock: Some(lock) }, file, len))
    }

    /// Where the partial file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the data its final name `to`. Without `replace`, fails with `AlreadyExists`
    /// if anything is at `to` (a hard link is atomic and never replaces; where hard links
    /// are unsupported, a checked rename is used). With `replace`, an existing `to` is
    /// replaced atomically (a symlink at `to` is replaced, not followed).
    pub fn publish(&mut self, to: &Path, replace: bool) -> io::Result<()> {
        if replace {
            std::fs::rename(&self.path, to)?;
        } else {
            match std::fs::hard_link(&self.path, to) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.path);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
                Err(_) => {
                    if std::fs::symlink_metadata(to).is_ok() {
                        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
                    }
                    std::fs::rename(&self.path, to)?;
                }
            }
        }
        self.done = true;
        Ok(())
    }

    /// Publishes under `dir/base`, or `dir/stem-N.ext` with the smallest free N; returns
    /// the path used. Never replaces anything.
    pub fn publish_unique(&mut self, dir: &Path, base: &str) -> io::Result<PathBuf> {
        let (stem, ext) = match base.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
            _ => (base, String::new()),
        };
        for n in 0..MAX_ALTERNATIVES {
            let name = if n == 0 { base.to_string() } else { format!("{stem}-{n}{ext}") };
            let to = dir.join(name);
            match self.publish(&to, false) {
                Ok(()) => return Ok(to),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{MAX_ALTERNATIVES} files named like {base} exist")))
    }
}

/// Takes the advisory lock of a resumable partial file (`flock`), or fails with `WouldBlock`
/// if another open of it (in this process or another) holds it. Where locks are unsupported
/// the in-process [`ResumeLock`] alone guards it.
fn lock_file(f: &File) -> io::Result<()> {
    match f.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(io::Error::new(io::ErrorKind::WouldBlock, "another transfer of this file is still writing to it"))
        }
        Err(std::fs::TryLockError::Error(_)) => Ok(()),
    }
}

/// Whether the file has names besides the one it was opened by (hard links).
fn extra_links(m: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::nlink(m) > 1
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        false
    }
}

/// Whether two metadata describe the same file (device and inode on Unix).
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        a.len() == b.len()
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        // A kept partial file with nothing in it has nothing to resume: removed too, so
        // that tries that never sent a byte do not pile up empty files.
        let empty = || std::fs::metadata(&self.path).is_ok_and(|m| m.len() == 0);
        if !self.done && (!self.keep || empty()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes a directory's entries durable (a rename or link inside it). A no-op off Unix.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}

/// Checks that `dir` is an existing directory where this process can create files.
pub fn check_writable_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let probe = dir.join(format!(".stt-probe-{}", random_tag()));
    create_new(&probe).map_err(|e| format!("cannot create files in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The directory a file path lives in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("stt-files-test-{}", random_tag()));
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(sanitize_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(sanitize_name("C:\\Users\\x\\evil.exe").as_deref(), Some("evil.exe"));
        assert_eq!(sanitize_name("a\u{1b}[31mred\n.txt").as_deref(), Some("a[31mred.txt"));
        assert_eq!(sanitize_name(".bashrc").as_deref(), Some("bashrc"));
        assert_eq!(sanitize_name(".."), None);
        assert_eq!(sanitize_name("dir/"), None);
        assert_eq!(sanitize_name(""), None);
        assert_eq!(sanitize_name("x.stt-partial"), None);
        assert!(sanitize_name(&"é".repeat(300)).unwrap().len() <= 200);
    }

    #[test]
    fn never_overwrites_never_follows_symlinks_mode_0600() {
        let d = tempdir();
        std::fs::write(d.join("a.txt"), b"old").unwrap();
        std::fs::write(d.join("a-1.txt"), b"old").unwrap();
        let (mut p, f) = Partial::create(&d, "a.txt").unwrap();
        std::io::Write::write_all(&mut &f, b"new").unwrap();
        assert!(p.path().to_string_lossy().ends_with(PARTIAL_SUFFIX));
        assert_eq!(p.publish(&d.join("a.txt"), false).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        let to = p.publish_unique(&d, "a.txt").unwrap();
        assert_eq!(to, d.join("a-2.txt"));
        assert_eq!(std::fs::read(d.join("a.txt")).unwrap(), b"old");
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&to).unwrap().permissions().mode() & 0o777, 0o600);
            // A symlink (even dangling) at the final name is neither followed nor replaced.
            std::os::unix::fs::symlink(d.join("target"), d.join("link")).unwrap();
            let (mut p, _f) = Partial::create(&d, "link").unwrap();
            let to = p.publish_unique(&d, "link").unwrap();
            assert_eq!(to, d.join("link-1"));
            assert!(!d.join("target").exists());
            assert!(create_new(&d.join("link")).is_err());
        }
        // Dropped unpublished: the partial file is gone.
        let (p, _f) = Partial::create(&d, "b").unwrap();
        let path = p.path().to_path_buf();
        assert!(path.exists());
        drop(p);
        assert!(!path.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn resumable_partials_are_kept_reopened_exclusive_and_never_symlinks() {
        let d = tempdir();
        let (p, f, len) = Partial::open_resumable(&d, "big.bin", "abcd").unwrap();
        assert_eq!(len, 0);
        std::io::Write::write_all(&mut &f, b"first").unwrap();
        // In use: a second transfer of the same file is refused, not interleaved.
        assert_eq!(Partial::open_resumable(&d, "big.bin", "abcd").err().unwrap().kind(), io::ErrorKind::WouldBlock);
        let path = p.path().to_path_buf();
        drop((p, f));
        assert_eq!(std::fs::read(&path).unwrap(), b"first", "kept after an unpublished drop");
        let (mut p, _f, len) = Partial::open_resumable(&d, "big.bin", "abcd").unwrap();
        assert_eq!(len, 5);
        p.publish(&d.join("big.bin"), false).unwrap();
        assert!(!path.exists());
        assert_eq!(std::fs::read(d.join("big.bin")).unwrap(), b"first");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.join("elsewhere"), d.join("x.t.stt-partial")).unwrap();
            assert!(Partial::open_resumable(&d, "x", "t").is_err());
            assert!(!d.join("elsewhere").exists());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A resumable try that stored nothing leaves nothing behind.
    #[test]
    fn empty_resumable_partial_is_not_kept() {
        let d = tempdir();
        let (p, f, _) = Partial::open_resumable(&d, "e", "t").unwrap();
        let path = p.path().to_path_buf();
        drop((p, f));
        assert!(!path.exists(), "an empty partial file was kept");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A failed transfer's async writer may still hold a clone of the file (its last write
    /// under way), and another process may have it open: the next try must not write too.
    #[test]
    fn resumable_partial_stays_locked_while_any_clone_or_process_holds_it() {
        let d = tempdir();
        let (p, f, _) = Partial::open_resumable(&d, "f", "t").unwrap();
        std::io::Write::write_all(&mut &f, b"held").unwrap();
        let writer = f.try_clone().unwrap();
        drop((p, f));
        let e = Partial::open_resumable(&d, "f", "t").err().expect("a clone still writes");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(writer);
        let (_p, _f, _) = Partial::open_resumable(&d, "f", "t").unwrap();
        // Another process (another open of the file) holding the lock.
        std::fs::write(d.join("g.t.stt-partial"), b"g").unwrap();
        let other = File::open(d.join("g.t.stt-partial")).unwrap();
        other.lock().unwrap();
        assert_eq!(Partial::open_resumable(&d, "g", "t").err().unwrap().kind(), io::ErrorKind::WouldBlock);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A partial file that shares its bytes with another name (a publish cut between link
    /// and unlink, or a planted hard link) is never written through.
    #[cfg(unix)]
    #[test]
    fn resumable_partial_with_another_name_is_started_afresh() {
        let d = tempdir();
        std::fs::write(d.join("published"), b"complete file").unwrap();
        std::fs::hard_link(d.join("published"), d.join("f.t.stt-partial")).unwrap();
        let (_p, f, len) = Partial::open_resumable(&d, "f", "t").unwrap();
        assert_eq!(len, 0, "nothing offered from another file's bytes");
        std::io::Write::write_all(&mut &f, b"new").unwrap();
        assert_eq!(std::fs::read(d.join("published")).unwrap(), b"complete file");
        assert_eq!(std::fs::read(d.join("f.t.stt-partial")).unwrap(), b"new");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unwritable_or_missing_dir_is_refused() {
        let d = tempdir();
        assert!(check_writable_dir(&d).is_ok());
        assert!(check_writable_dir(&d.join("missing")).is_err());
        std::fs::write(d.join("file"), b"").unwrap();
        assert!(check_writable_dir(&d.join("file")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
