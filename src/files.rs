//! Files listgate creates hold personal data (the database and its -wal and
//! -shm files, backups, proof documents, the file transport's `.eml` mails,
//! exports): only their owner may read them.
//!
//! The binary sets the process umask to 077 before anything else
//! ([`restrict_umask`]), which covers files created by others on its behalf
//! (SQLite creates the database, its WAL and shared-memory files itself).
//! The writers below also ask for mode 0600 (folders 0700) explicitly, so the
//! library keeps the promise when it is embedded (tests, other programs).

use std::path::Path;

/// Sets the process umask to 077: every file created from here on is
/// owner-only, whatever umask the shell or the service manager left.
pub fn restrict_umask() {
    #[cfg(unix)]
    // SAFETY: umask(2) only swaps the process's file-mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Options that create a file with mode 0600 (truncating it if it exists).
pub fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes `bytes` to a new or truncated file with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    private_options().open(path)?.write_all(bytes)
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Narrows an existing file to mode 0600 (a copy SQLite created for us).
pub fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
