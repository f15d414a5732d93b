//! The development certificate: a local CA (`dev-ca.pem`, the file a developer trusts) and a
//! leaf for localhost, 127.0.0.1 and ::1 signed by it, generated into the certificate folder
//! on first use and reused after.
//!
//! The CA outlives its leaves. A leaf that is missing, unreadable or within a week of its
//! end is issued anew by the CA already there, so that what the developer trusted (in a
//! browser, `NODE_EXTRA_CA_CERTS`, a system store) keeps working; only without a usable CA
//! are both made anew.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::{
    Identity, TlsError, DEV_CA_FILE, DEV_CA_KEY_FILE, DEV_CERT_FILE, DEV_KEY_FILE, DEV_NAMES,
};

/// A leaf this close to its end is issued anew.
const RENEW_BEFORE: time::Duration = time::Duration::days(7);

/// The development certificate in `dir` (see the module documentation).
pub fn ensure_dev_identity(dir: &Path) -> Result<Identity, TlsError> {
    let cert_path = dir.join(DEV_CERT_FILE);
    let key_path = dir.join(DEV_KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        match Identity::load(&cert_path, &key_path) {
            Ok(identity) if !ends_soon(&identity) && keys_match(&identity) => return Ok(identity),
            Ok(identity) if ends_soon(&identity) => tracing::warn!(
                "the development certificate in {} ends within a week; issuing a new one",
                dir.display()
            ),
            Ok(_) => tracing::warn!(
                "the development certificate in {} is not its key's; issuing a new one",
                dir.display()
            ),
            Err(_) => tracing::warn!(
                "the development certificate in {} is unreadable; issuing a new one",
                dir.display()
            ),
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let (ca, ca_pem) = match existing_ca(dir) {
        Some(ca) => ca,
        None => {
            if dir.join(DEV_CA_FILE).exists() {
                // News: the CA the developer trusted no longer signs what is served.
                tracing::warn!(
                    "the development CA in {} cannot sign (its key is missing or not its \
                     own): making a new one; trust the new dev-ca.pem",
                    dir.display()
                );
            }
            new_ca(dir)?
        }
    };
    issue_leaf(dir, &ca, &ca_pem)?;
    Identity::load(&cert_path, &key_path)
}

/// Whether the leaf of `identity` ends within [`RENEW_BEFORE`] (or cannot be read as X.509).
fn ends_soon(identity: &Identity) -> bool {
    let Some(leaf) = identity.chain.first() else {
        return true;
    };
    match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, parsed)) => {
            let ends = parsed.validity().not_after.timestamp();
            ends < (OffsetDateTime::now_utc() + RENEW_BEFORE).unix_timestamp()
        }
        Err(_) => true,
    }
}

/// Whether the leaf of `identity` is its key's (rustls would refuse the pair at start).
fn keys_match(identity: &Identity) -> bool {
    let Ok(key) = KeyPair::try_from(&identity.key) else {
        return false;
    };
    certificate_key_is(identity.chain.first(), &key)
}

/// Whether the public key of `cert` is `key`'s.
fn certificate_key_is(cert: Option<&rustls::pki_types::CertificateDer<'_>>, key: &KeyPair) -> bool {
    let Some(Ok((_, parsed))) = cert.map(|der| x509_parser::parse_x509_certificate(der)) else {
        return false;
    };
    parsed.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

/// The CA in `dir`, when its certificate and key are there and go together.
fn existing_ca(dir: &Path) -> Option<(Issuer<'static, KeyPair>, String)> {
    let pem = std::fs::read_to_string(dir.join(DEV_CA_FILE)).ok()?;
    let key = std::fs::read_to_string(dir.join(DEV_CA_KEY_FILE)).ok()?;
    let key = KeyPair::from_pem(&key).ok()?;
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).ok()?
    };
    if !certificate_key_is(Some(&der), &key) {
        tracing::warn!(
            "the development CA's key in {} is not its certificate's; making a new CA",
            dir.display()
        );
        return None;
    }
    let issuer = Issuer::from_ca_cert_pem(&pem, key).ok()?;
    Some((issuer, pem))
}

/// A new CA, written into `dir`.
fn new_ca(dir: &Path) -> Result<(Issuer<'static, KeyPair>, String), TlsError> {
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "vobiz-tunnel development CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    write_file(&dir.join(DEV_CA_FILE), &pem, false)?;
    write_file(&dir.join(DEV_CA_KEY_FILE), &key.serialize_pem(), true)?;
    tracing::info!("made a development CA in {}", dir.display());
    Ok((Issuer::new(params, key), pem))
}

/// A leaf for [`DEV_NAMES`] signed by `ca`, written into `dir` with the CA after it.
fn issue_leaf(dir: &Path, ca: &Issuer<'static, KeyPair>, ca_pem: &str) -> Result<(), TlsError> {
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "vobiz-tunnel development certificate");
    for name in DEV_NAMES {
        params.subject_alt_names.push(match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into()?),
        });
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::days(1);
    // Browsers refuse leaf certificates valid for longer than 398 days.
    params.not_after = now + time::Duration::days(397);
    let cert = params.signed_by(&key, ca)?;
    write_file(&dir.join(DEV_KEY_FILE), &key.serialize_pem(), true)?;
    write_file(
        &dir.join(DEV_CERT_FILE),
        &format!("{}{ca_pem}", cert.pem()),
        false,
    )?;
    tracing::info!("issued a development certificate in {}", dir.display());
    Ok(())
}

/// Writes `path` whole or not at all (a new file renamed over it): a start killed half-way
/// never leaves a key without its certificate. A `private` file (a key) is readable by its
/// owner only from its creation.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut staged = path.as_os_str().to_owned();
    staged.push(".new");
    let staged = std::path::PathBuf::from(staged);
    let _ = std::fs::remove_file(&staged);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = private;
    let mut file = options.open(&staged).map_err(write_err)?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&staged, path).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    fn ca_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(DEV_CA_FILE)).unwrap()
    }

    #[test]
    fn a_leaf_within_a_week_of_its_end_is_renewed() {
        let leaf = |days: i64| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.not_after = OffsetDateTime::now_utc() + time::Duration::days(days);
            let cert = params.self_signed(&key).unwrap();
            Identity {
                chain: vec![cert.der().clone()],
                key: rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            }
        };
        assert!(ends_soon(&leaf(3)));
        assert!(!ends_soon(&leaf(30)));
    }

    /// Deleting the leaf's key (or the leaf) gets a new leaf from the CA the developer
    /// trusted, not a new CA.
    #[test]
    fn a_lost_leaf_is_issued_again_by_the_same_ca() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_dev_identity(dir.path()).unwrap();
        let ca = ca_of(dir.path());
        for lost in [DEV_KEY_FILE, DEV_CERT_FILE] {
            std::fs::remove_file(dir.path().join(lost)).unwrap();
            let again = ensure_dev_identity(dir.path()).unwrap();
            assert_ne!(again.chain[0], first.chain[0], "{lost}: a new leaf");
            assert_eq!(ca_of(dir.path()), ca, "{lost}: the same CA");
            assert_eq!(again.chain[1], first.chain[1], "{lost}: chained to it");
            // The leaf verifies under the CA the developer trusted.
            let mut roots = rustls::RootCertStore::empty();
            roots.add(first.chain[1].clone()).unwrap();
            let verifier = rustls::client::WebPkiServerVerifier::builder(roots.into())
                .build()
                .unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let now = rustls::pki_types::UnixTime::now();
            verifier
                .verify_server_cert(&again.chain[0], &again.chain[1..], &name, &[], now)
                .unwrap_or_else(|e| panic!("{lost}: {e}"));
        }
        // Without its key the CA cannot sign: both are made anew.
        std::fs::remove_file(dir.path().join(DEV_CA_KEY_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(DEV_KEY_FILE)).unwrap();
        ensure_dev_identity(dir.path()).unwrap();
        assert_ne!(ca_of(dir.path()), ca);
    }
}
