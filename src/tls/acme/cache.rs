//! The ACME cache on disk: the account (its key included) and the certificates obtained,
//! so that a restart neither registers a new account nor orders a new certificate.
//!
//! Layout, one folder per CA so that switching `--acme-directory` (staging → production)
//! never presents one CA's account to another:
//!
//! ```text
//! <cache>/<directory URL made file-safe>/account.json      0600, instant-acme credentials
//! <cache>/<directory URL made file-safe>/<domains>.key.pem  0600
//! <cache>/<directory URL made file-safe>/<domains>.crt.pem  chain, leaf first
//! ```
//!
//! Every write goes to a temporary file that is renamed over the old one, so a crash leaves
//! either the old file or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use instant_acme::AccountCredentials;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::super::reload::certified_key;
use super::super::{Identity, TlsError};

/// A certificate from the cache or the CA, with the dates that decide its renewal.
#[derive(Clone, Debug)]
pub struct Stored {
    pub key: Arc<CertifiedKey>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl Stored {
    /// Parses a PEM chain and key as the CA returned them (or as cached), checking that the
    /// leaf names every domain asked for.
    pub fn from_pem(chain: &str, key: &str, domains: &[String]) -> Result<Stored, String> {
        let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("unreadable certificate chain: {e}"))?;
        let leaf = chain.first().ok_or("no certificate in the chain")?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        let validity = parsed.validity();
        let (not_before, not_after) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        let names: Vec<String> = match parsed.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        Some(dns.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if let Some(missing) = domains.iter().find(|d| !names.contains(d)) {
            return Err(format!("the certificate does not name {missing}"));
        }
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|e| format!("unreadable private key: {e}"))?;
        let key = certified_key(Identity { chain, key }).map_err(|e| e.to_string())?;
        Ok(Stored {
            key,
            not_before,
            not_after,
        })
    }
}

/// One CA's folder inside the cache directory.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
}

/// `https://acme-v02.api.letsencrypt.org/directory` → `acme-v02.api.letsencrypt.org_directory`.
fn file_safe(text: &str) -> String {
    let text = text.split_once("://").map_or(text, |(_, rest)| rest);
    let safe: String = text
        .trim_end_matches('/')
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .collect();
    // Keep names short enough for any filesystem.
    safe.chars().take(120).collect()
}

impl Cache {
    pub fn open(root: &Path, directory: &str) -> Result<Cache, TlsError> {
        let dir = root.join(file_safe(directory));
        std::fs::create_dir_all(&dir).map_err(|source| TlsError::Write {
            path: dir.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            // The folder holds private keys: keep others from even listing it.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Cache { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// Paths of the key and chain for this set of domains.
    pub fn certificate_paths(&self, domains: &[String]) -> (PathBuf, PathBuf) {
        let name = file_safe(&domains.join("+"));
        (
            self.dir.join(format!("{name}.key.pem")),
            self.dir.join(format!("{name}.crt.pem")),
        )
    }

    /// The cached account, if there is a readable one. A damaged file is reported and
    /// ignored: registering a new account is cheap and harmless.
    pub fn load_account(&self) -> Option<AccountCredentials> {
        let path = self.account_path();
        let text = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&text) {
            Ok(credentials) => Some(credentials),
            Err(e) => {
                tracing::warn!(
                    "ignoring the unreadable ACME account {}: {e}",
                    path.display()
                );
                None
            }
        }
    }

    pub fn store_account(&self, credentials: &AccountCredentials) -> Result<(), TlsError> {
        let json = serde_json::to_vec_pretty(credentials)
            .map_err(|e| TlsError::Acme(format!("cannot serialise the ACME account: {e}")))?;
        write_atomic(&self.account_path(), &json, true)
    }

    /// The cached certificate for these domains, if it loads and names them all.
    pub fn load_certificate(&self, domains: &[String]) -> Option<Stored> {
        let (key_path, chain_path) = self.certificate_paths(domains);
        let key = std::fs::read_to_string(&key_path).ok()?;
        let chain = std::fs::read_to_string(&chain_path).ok()?;
        match Stored::from_pem(&chain, &key, domains) {
            Ok(stored) => Some(stored),
            Err(e) => {
                tracing::warn!(
                    "ignoring the cached certificate {}: {e}",
                    chain_path.display()
                );
                None
            }
        }
    }

    /// Key first: if we stop between the two renames, the next start finds a mismatched
    /// pair, ignores it and orders again, rather than serving a wrong key.
    pub fn store_certificate(
        &self,
        domains: &[String],
        chain: &str,
        key: &str,
    ) -> Result<(), TlsError> {
        let (key_path, chain_path) = self.certificate_paths(domains);
        write_atomic(&key_path, key.as_bytes(), true)?;
        write_atomic(&chain_path, chain.as_bytes(), false)
    }
}

/// Writes `bytes` to a temporary file next to `path` (created 0600 when `private`, so the
/// key is never readable by others even for a moment) and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let _ = private;
    let result = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_urls_become_folder_names() {
        assert_eq!(
            file_safe("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org_directory"
        );
        assert_eq!(
            file_safe("https://127.0.0.1:14000/dir/"),
            "127.0.0.1_14000_dir"
        );
        assert_eq!(file_safe("a.example+b.example"), "a.example_b.example");
    }
}
