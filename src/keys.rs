//! The secret key ring: where secrets come from, and the keys derived from them.
//!
//! A key ring is a list of `KID:BASE64URL` entries (whitespace, comma or
//! newline separated; `#` starts a comment). The entry with the highest key id
//! signs new tokens and proof events; every entry still verifies, so rotating
//! a key never breaks a link in an old mail. Each secret is split by HMAC into
//! separate keys for tokens, the proof chain and address hashes, so one use
//! can never stand in for another.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Secret bytes per key; HMAC-SHA256 gains nothing from more.
pub const KEY_BYTES: usize = 32;

/// The keys derived from one secret.
pub struct DerivedKeys {
    pub token: hmac::Key,
    pub chain: hmac::Key,
    pub address: hmac::Key,
    /// SipHash-2-4 key of the permutation that conceals row ids in links
    /// (`token::conceal`): a PRF far cheaper than an HMAC, needed four
    /// times per link.
    pub conceal: [u8; 16],
}

/// All configured secrets by key id.
pub struct KeyRing {
    keys: BTreeMap<u16, DerivedKeys>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even in debug output.
        f.debug_struct("KeyRing").field("key_ids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

/// What happened while loading the key ring, for the operator.
#[derive(Debug, PartialEq, Eq)]
pub enum KeySource {
    Config,
    File { warn_permissions: bool },
    Generated,
}

impl KeyRing {
    /// Parses a key ring text.
    pub fn parse(text: &str) -> Result<KeyRing, String> {
        let mut keys = BTreeMap::new();
        let entries = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or(""))
            .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|entry| !entry.is_empty());
        for entry in entries {
            let (id, secret) = entry.split_once(':').ok_or("a key entry must look like 1:BASE64URL")?;
            let id: u16 = id.parse().ok().filter(|id| *id > 0).ok_or("key ids are numbers from 1 to 65535")?;
            let secret = URL_SAFE_NO_PAD.decode(secret).map_err(|_| format!("key {id} is not base64url"))?;
            if secret.len() < KEY_BYTES {
                return Err(format!("key {id} is shorter than {KEY_BYTES} bytes"));
            }
            if keys.insert(id, derive(&secret)).is_some() {
                return Err(format!("key id {id} appears twice"));
            }
        }
        if keys.is_empty() {
            return Err("no key found".into());
        }
        Ok(KeyRing { keys })
    }

    /// Reads the ring from the inline setting, or else the key file; `None`
    /// when there is no key file. The one reader behind `load_or_create`,
    /// `load_existing` and `check-config`.
    pub fn read(inline: Option<&str>, key_file: &Path) -> Result<Option<(KeyRing, KeySource)>, String> {
        if let Some(text) = inline {
            return KeyRing::parse(text)
                .map(|ring| Some((ring, KeySource::Config)))
                .map_err(|e| format!("secrets.key: {e}"));
        }
        match std::fs::read_to_string(key_file) {
            Ok(text) => {
                let ring = KeyRing::parse(&text).map_err(|e| format!("{}: {e}", key_file.display()))?;
                Ok(Some((ring, KeySource::File { warn_permissions: readable_by_others(key_file) })))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read key file {}: {e}", key_file.display())),
        }
    }

    /// Loads the ring from the inline setting, or the key file, or creates the
    /// key file with a fresh key (mode 0600).
    pub fn load_or_create(inline: Option<&str>, key_file: &Path) -> Result<(KeyRing, KeySource), String> {
        if let Some(found) = KeyRing::read(inline, key_file)? {
            return Ok(found);
        }
        let entry = new_entry(1)?;
        KeyRing::create_file(key_file, &entry)?;
        Ok((KeyRing::parse(&entry)?, KeySource::Generated))
    }

    /// Creates the key file holding `entry` (from [`new_entry`]), with mode
    /// 0600 from the start (never a window in which others can read it), and
    /// syncs it to disk. Fails if the file exists: a ring is never overwritten.
    /// The first run of `serve` and `keygen --write` both create it here.
    pub fn create_file(key_file: &Path, entry: &str) -> Result<(), String> {
        let content = format!(
            "# listgate secret keys; the highest id signs new links. Keep this file secret and backed up.\n{entry}\n"
        );
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file =
            options.open(key_file).map_err(|e| format!("cannot create key file {}: {e}", key_file.display()))?;
        file.write_all(content.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("cannot write key file {}: {e}", key_file.display()))
    }

    /// Appends `entry` (from [`new_entry`]) to the existing key file and
    /// syncs it: with a higher id it signs from the server's next start,
    /// while the older keys still verify. Never creates the file; that is
    /// [`KeyRing::create_file`], with its mode.
    pub fn append_to_file(key_file: &Path, entry: &str) -> Result<(), String> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(key_file)
            .map_err(|e| format!("cannot open {}: {e}", key_file.display()))?;
        writeln!(file, "{entry}")
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", key_file.display()))
    }

    /// Loads an existing ring (inline, or the key file) without ever creating
    /// one: for commands other than `serve`, where a fresh key would sign
    /// links nobody can use and verify nothing.
    pub fn load_existing(inline: Option<&str>, key_file: &Path) -> Result<KeyRing, String> {
        match KeyRing::read(inline, key_file)? {
            Some((ring, _)) => Ok(ring),
            None => Err(format!(
                "no key file at {} (check secrets.key_file; `listgate serve` creates it on its first run)",
                key_file.display()
            )),
        }
    }

    /// The id of the key that signs new tokens and events.
    pub fn current_id(&self) -> u16 {
        *self.keys.keys().next_back().expect("a key ring is never empty")
    }

    pub fn current(&self) -> &DerivedKeys {
        self.keys.values().next_back().expect("a key ring is never empty")
    }

    pub fn get(&self, id: u16) -> Option<&DerivedKeys> {
        self.keys.get(&id)
    }

    pub fn all(&self) -> impl Iterator<Item = (u16, &DerivedKeys)> {
        self.keys.iter().map(|(id, k)| (*id, k))
    }
}

/// A fresh `KID:BASE64URL` entry from the system's secure random source.
pub fn new_entry(id: u16) -> Result<String, String> {
    let mut secret = [0u8; KEY_BYTES];
    SystemRandom::new().fill(&mut secret).map_err(|_| "the system random source failed".to_string())?;
    Ok(format!("{id}:{}", URL_SAFE_NO_PAD.encode(secret)))
}

fn derive(secret: &[u8]) -> DerivedKeys {
    let master = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let sub = |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&master, label).as_ref());
    DerivedKeys {
        token: sub(b"listgate token v1"),
        chain: sub(b"listgate proof chain v1"),
        address: sub(b"listgate address hash v1"),
        conceal: hmac::sign(&master, b"listgate concealed id v1").as_ref()[..16].try_into().expect("16 bytes"),
    }
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o077 != 0).unwrap_or(false)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_creates_a_private_key_file_and_second_run_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("listgate.key");
        let (ring, source) = KeyRing::load_or_create(None, &path).unwrap();
        assert_eq!(source, KeySource::Generated);
        assert_eq!(ring.current_id(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (_, source) = KeyRing::load_or_create(None, &path).unwrap();
        assert_eq!(source, KeySource::File { warn_permissions: false });
    }

    #[test]
    fn an_appended_key_becomes_current_and_a_key_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("listgate.key");
        KeyRing::create_file(&path, &new_entry(1).unwrap()).unwrap();
        KeyRing::append_to_file(&path, &new_entry(2).unwrap()).unwrap();
        let ring = KeyRing::load_existing(None, &path).unwrap();
        assert_eq!(ring.current_id(), 2);
        assert!(ring.get(1).is_some());
        assert!(KeyRing::create_file(&path, &new_entry(3).unwrap()).unwrap_err().contains("cannot create key file"));
        assert_eq!(KeyRing::load_existing(None, &path).unwrap().current_id(), 2);
        assert!(KeyRing::append_to_file(&dir.path().join("none.key"), &new_entry(1).unwrap()).is_err());
        assert!(!dir.path().join("none.key").exists());
    }

    #[test]
    fn highest_id_is_current_and_bad_rings_are_refused() {
        let ring = KeyRing::parse(&format!("# keys\n{}\n{}", new_entry(1).unwrap(), new_entry(7).unwrap())).unwrap();
        assert_eq!(ring.current_id(), 7);
        assert!(ring.get(1).is_some());
        assert!(KeyRing::parse("").is_err());
        assert!(KeyRing::parse("1:c2hvcnQ").unwrap_err().contains("shorter"));
        assert!(KeyRing::parse("0:AAAA").is_err());
        let e = new_entry(2).unwrap();
        assert!(KeyRing::parse(&format!("{e},{e}")).unwrap_err().contains("twice"));
    }
}
