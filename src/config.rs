//! Validated settings, built once from the command line. Everything downstream takes these
//! types, never raw strings: a bad URL or a zero timeout is an error at start-up, not later.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hyper::Uri;

use crate::cli::{HostHeader, ListenArgs, LogFormat, TokenArgs};
use crate::signature::{AuthToken, Keys};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--forward {url:?}: {reason}")]
    Forward { url: String, reason: String },
    #[error("--public-url {url:?}: {reason}")]
    PublicUrl { url: String, reason: String },
    #[error(
        "{flag} must be a positive number of seconds, at most {}, not {value}",
        MAX_SECONDS
    )]
    Duration { flag: &'static str, value: f64 },
    #[error("{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error("an empty auth token was given (check {0})")]
    EmptyToken(&'static str),
    #[error(
        "--reject-invalid needs a token to verify callbacks with: set VOBIZ_AUTH_TOKEN \
         (--auth-token) and, for -MA- headers, VOBIZ_MAIN_AUTH_TOKEN (--main-auth-token)"
    )]
    RejectWithoutToken,
    #[error(
        "--reject-replays needs a token to verify signatures with: set VOBIZ_AUTH_TOKEN \
         (--auth-token) and, for -MA- headers, VOBIZ_MAIN_AUTH_TOKEN (--main-auth-token)"
    )]
    RejectReplaysWithoutToken,
    #[error("{flag} {path}: {reason}")]
    CaFile {
        flag: &'static str,
        path: String,
        reason: String,
    },
    #[error(transparent)]
    Relay(#[from] crate::relay::config::RelayConfigError),
}

impl ListenConfig {
    /// What is allowed but probably a mistake, said before the listener starts.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let (Some(_), Some(public)) = (&self.relay, &self.public_url) {
            warnings.push(format!(
                "--public-url {} (or VOBIZ_TUNNEL_PUBLIC_URL) replaces the URL the relay says \
                 Vobiz called when signatures are checked; leave it out with --relay, unless a \
                 proxy in front of the relay changes the URL",
                public.join("")
            ));
        }
        warnings
    }
}

/// The CA files named by `flag`, each checked (see [`crate::tls::ca_file_problem`]).
pub fn ca_files(flag: &'static str, paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    for path in paths {
        if let Some(reason) = crate::tls::ca_file_problem(path) {
            return Err(ConfigError::CaFile {
                flag,
                path: path.display().to_string(),
                reason,
            });
        }
    }
    Ok(paths.to_vec())
}

/// A scheme and authority, plus an optional path prefix, that request targets are appended to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub scheme: String,
    pub authority: String,
    /// Path prefix without a trailing slash ("" for none).
    pub prefix: String,
}

impl BaseUrl {
    /// Parses `scheme://authority[/prefix]`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let uri: Uri = text.parse().map_err(|e| format!("not a URL ({e})"))?;
        let scheme = uri
            .scheme_str()
            .ok_or("the URL needs a scheme (http:// or https://)")?
            .to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("the scheme must be http or https, not {scheme}"));
        }
        let authority = uri.authority().ok_or("the URL needs a host")?.to_string();
        if authority.contains('@') {
            return Err("credentials in the URL are not supported here".into());
        }
        if uri.query().is_some() {
            return Err("the URL must not have a query".into());
        }
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(BaseUrl {
            scheme,
            authority,
            prefix,
        })
    }

    /// The base joined with an origin-form request target (`/path?query`).
    pub fn join(&self, target: &str) -> String {
        let mut url = String::with_capacity(
            self.scheme.len() + self.authority.len() + self.prefix.len() + target.len() + 3,
        );
        url.push_str(&self.scheme);
        url.push_str("://");
        url.push_str(&self.authority);
        url.push_str(&self.prefix);
        if !target.starts_with('/') {
            url.push('/');
        }
        url.push_str(target);
        url
    }
}

/// Whether `host` (a Host header's value, with or without a port) is safe to build a URL or
/// a `Location` header from: a name, an address or an IPv6 literal, nothing else.
pub fn plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

/// Where the TLS identity comes from.
#[derive(Clone, Debug)]
pub enum CertSource {
    Files { cert: PathBuf, key: PathBuf },
    Dev { dir: PathBuf },
}

/// Limits and deadlines of the listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_body_bytes: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub forward_timeout: Duration,
}

/// Everything `listen` needs.
#[derive(Clone, Debug)]
pub struct ListenConfig {
    pub listen: SocketAddr,
    pub forward: BaseUrl,
    pub certs: CertSource,
    /// Extra PEM files trusted for https upstreams (the dev CA, `--forward-ca`).
    pub upstream_roots: Vec<PathBuf>,
    pub keys: Keys,
    pub public_url: Option<BaseUrl>,
    pub store: PathBuf,
    pub reject_invalid: bool,
    /// Refuse a callback whose nonce and signature came before (`--reject-replays`).
    pub reject_replays: bool,
    /// Warn (never block) on callbacks from outside Vobiz's published source addresses.
    pub vobiz_ips_warning: bool,
    pub host_header: HostHeader,
    pub log_format: LogFormat,
    pub tui: bool,
    pub limits: Limits,
    /// Receive callbacks through this relay as well.
    pub relay: Option<crate::relay::config::RelayClientConfig>,
}

/// The longest wait any flag may ask for (a day): anything longer is a typo, and far past
/// what `Duration` can hold it would not even convert.
pub const MAX_SECONDS: f64 = 86_400.0;

fn seconds(flag: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value > 0.0 && value <= MAX_SECONDS {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::Duration { flag, value })
    }
}

/// Builds [`Keys`] from the token flags. Empty tokens are an error: they would verify nothing
/// and hide a misconfigured environment variable.
pub fn keys(tokens: &TokenArgs) -> Result<Keys, ConfigError> {
    let convert = |list: &[String], flag| {
        list.iter()
            .map(|t| t.trim())
            .map(|t| {
                if t.is_empty() {
                    Err(ConfigError::EmptyToken(flag))
                } else {
                    Ok(AuthToken::new(t))
                }
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Keys {
        auth_tokens: convert(&tokens.auth_tokens, "--auth-token / VOBIZ_AUTH_TOKEN")?,
        main_auth_tokens: convert(
            &tokens.main_auth_tokens,
            "--main-auth-token / VOBIZ_MAIN_AUTH_TOKEN",
        )?,
    })
}

impl ListenConfig {
    pub fn from_args(args: &ListenArgs) -> Result<ListenConfig, ConfigError> {
        let forward = BaseUrl::parse(&args.forward).map_err(|reason| ConfigError::Forward {
            url: args.forward.clone(),
            reason,
        })?;
        let public_url = match &args.public_url {
            Some(url) => Some(
                BaseUrl::parse(url).map_err(|reason| ConfigError::PublicUrl {
                    url: url.clone(),
                    reason,
                })?,
            ),
            None => None,
        };
        let certs = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => CertSource::Dev {
                dir: args.certs_dir.clone(),
            },
        };
        if args.max_connections == 0 {
            return Err(ConfigError::Zero {
                flag: "--max-connections",
            });
        }
        if args.max_body == 0 {
            return Err(ConfigError::Zero { flag: "--max-body" });
        }
        let keys = keys(&args.tokens)?;
        let no_token = keys.auth_tokens.is_empty() && keys.main_auth_tokens.is_empty();
        if args.reject_invalid && no_token {
            // Every callback would be refused: surely not what was meant.
            return Err(ConfigError::RejectWithoutToken);
        }
        if args.reject_replays && no_token {
            // Nothing would verify, so nothing would be recognised as a replay.
            return Err(ConfigError::RejectReplaysWithoutToken);
        }
        Ok(ListenConfig {
            listen: args.listen,
            forward,
            upstream_roots: std::iter::once(args.certs_dir.join(crate::tls::DEV_CA_FILE))
                .chain(ca_files("--forward-ca", &args.forward_ca)?)
                .collect(),
            certs,
            keys,
            public_url,
            store: args
                .store
                .clone()
                .unwrap_or_else(crate::store::default_path),
            reject_invalid: args.reject_invalid,
            reject_replays: args.reject_replays,
            vobiz_ips_warning: args.vobiz_ips_warning,
            host_header: args.host_header,
            log_format: args.log_format,
            tui: !args.no_tui,
            relay: match &args.relay {
                Some(relay) => Some(crate::relay::config::RelayClientConfig::parse(
                    relay,
                    args.relay_token.as_deref(),
                    match &args.relay_ca {
                        Some(ca) => ca_files("--relay-ca", std::slice::from_ref(ca))?.pop(),
                        None => None,
                    },
                )?),
                None => None,
            },
            limits: Limits {
                max_connections: args.max_connections,
                max_body_bytes: args.max_body,
                handshake_timeout: seconds("--handshake-timeout", args.handshake_timeout)?,
                header_timeout: seconds("--header-timeout", args.header_timeout)?,
                body_timeout: seconds("--body-timeout", args.body_timeout)?,
                forward_timeout: seconds("--forward-timeout", args.forward_timeout)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_prefix_is_kept_and_joined() {
        let base = BaseUrl::parse("http://localhost:3000/api/").unwrap();
        assert_eq!(base.join("/cb?x=1"), "http://localhost:3000/api/cb?x=1");
        let bare = BaseUrl::parse("https://LOCALHOST:3443").unwrap();
        assert_eq!(bare.join("/cb"), "https://LOCALHOST:3443/cb");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        assert!(BaseUrl::parse("ftp://x")
            .unwrap_err()
            .contains("http or https"));
        assert!(BaseUrl::parse("localhost:3000").is_err());
        assert!(BaseUrl::parse("http://u:p@h/")
            .unwrap_err()
            .contains("credentials"));
    }

    #[test]
    fn a_public_url_beside_a_relay_is_warned_about() {
        use clap::Parser;
        let parsed = |extra: &[&str]| {
            let argv = [
                "vobiz-tunnel",
                "--relay",
                "relay.example.com",
                "--relay-token",
                "t",
            ];
            let cli = crate::cli::Cli::parse_from(argv.iter().chain(extra));
            ListenConfig::from_args(&cli.listen).unwrap()
        };
        assert!(parsed(&[]).warnings().is_empty());
        let both = parsed(&["--public-url", "https://other.example.com"]).warnings();
        assert!(
            both.len() == 1 && both[0].contains("--public-url https://other.example.com"),
            "{both:?}"
        );
    }

    #[test]
    fn empty_tokens_are_refused() {
        let tokens = TokenArgs {
            auth_tokens: vec![" ".into()],
            main_auth_tokens: vec![],
        };
        assert!(keys(&tokens).is_err());
    }
}
