//! Validated settings of the relay (`vobiz-tunnel relay`) and of the laptop's tunnel
//! (`listen --relay`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{LogFormat, RelayArgs};
use crate::signature::AuthToken;

/// Vobiz's published callback source addresses (docs `concepts/ip-whitelisting`). Shared by
/// every Vobiz customer, so an allow-list is hygiene, not authentication.
pub const VOBIZ_CALLBACK_SOURCES: &[&str] = &["15.206.6.156", "35.154.59.246", "15.207.8.226"];

#[derive(Debug, thiserror::Error)]
pub enum RelayConfigError {
    #[error("give --token (or VOBIZ_TUNNEL_RELAY_TOKEN) or at least one --route")]
    NoToken,
    /// The route as given, its token redacted (an error message is printed, and logged).
    #[error("--route {0:?}: write HOST=TOKEN or /PREFIX=TOKEN (a host name: letters, digits, dots, dashes and underscores)")]
    Route(String),
    #[error("two routes use the same token ({0}): a token must name one laptop")]
    SharedToken(String),
    #[error("two routes claim {0}: each host or path prefix goes to one laptop")]
    SharedRoute(String),
    #[error("--allow-ip {0:?} is not an address or ADDR/BITS block")]
    AllowIp(String),
    #[error(
        "{flag} must be a number of seconds from 0 to {}, not {value}",
        crate::config::MAX_SECONDS
    )]
    Seconds { flag: &'static str, value: f64 },
    #[error("--relay {0:?}: write HOST or HOST:PORT")]
    RelayAddress(String),
    #[error("--relay needs --relay-token (or VOBIZ_TUNNEL_RELAY_TOKEN)")]
    NoRelayToken,
    #[error("--route /=TOKEN would take every path: the route for all callbacks is --token; a prefix names a path, such as /laptop-a")]
    RootPrefix,
}

/// Which public callbacks a tunnel receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteMatch {
    /// Every callback (the single-laptop `--token` setup).
    Any,
    /// Callbacks to this hostname (case-insensitive, port ignored).
    Host(String),
    /// Callbacks whose path starts with this prefix (removed before forwarding).
    Prefix(String),
}

/// One laptop's route and the token it authenticates with.
#[derive(Clone, Debug)]
pub struct Route {
    pub matcher: RouteMatch,
    pub token: AuthToken,
}

impl Route {
    /// A name for logs: the host, the prefix, or "default". Never the token.
    pub fn name(&self) -> String {
        match &self.matcher {
            RouteMatch::Any => "default".into(),
            RouteMatch::Host(host) => host.clone(),
            RouteMatch::Prefix(prefix) => prefix.clone(),
        }
    }
}

/// An address block of the allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    pub addr: IpAddr,
    pub bits: u8,
}

impl IpBlock {
    pub fn parse(text: &str) -> Option<IpBlock> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
            None => {
                let addr = text.parse::<IpAddr>().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(IpBlock { addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Where the relay's certificate comes from.
#[derive(Clone, Debug)]
pub enum RelayCerts {
    /// PEM files, reloaded when they change on disk.
    Files { cert: PathBuf, key: PathBuf },
    /// ACME for the domains, cached in `cache`.
    Acme {
        domains: Vec<String>,
        email: Option<String>,
        directory: String,
        directory_ca: Option<PathBuf>,
        cache: PathBuf,
        http_listen: Option<SocketAddr>,
        /// The port callbacks reach the relay on: HTTP-01's redirects to https name it
        /// unless it is 443 (or 0, not known before binding).
        https_port: u16,
    },
    /// The development certificate (local trials and tests).
    Dev { dir: PathBuf },
}

/// Everything `vobiz-tunnel relay` needs.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    pub domains: Vec<String>,
    pub certs: RelayCerts,
    pub routes: Vec<Route>,
    /// How long a callback waits for a laptop to (re)connect before 503.
    pub hold: Duration,
    /// `Some`: callbacks from elsewhere get 403.
    pub allow: Option<Vec<IpBlock>>,
    pub auth_timeout: Duration,
    pub forward_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    /// How long a sender may take over a request's headers; also how long a public
    /// connection is kept without a request in flight.
    pub header_timeout: Duration,
    /// When stopping, how long callbacks in flight get to be answered before the relay
    /// answers them 503 itself.
    pub drain_timeout: Duration,
    pub log_format: LogFormat,
}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, RelayConfigError> {
    if (0.0..=crate::config::MAX_SECONDS).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(RelayConfigError::Seconds { flag, value })
    }
}

fn parse_route(text: &str) -> Result<Route, RelayConfigError> {
    // What the error shows: never the token, which may be all of `text` (a missing `=`).
    let shown = || {
        let redacted = match text.split_once('=') {
            Some((target, token)) => format!("{target}={}", AuthToken::new(token.trim())),
            None => AuthToken::new(text.trim()).to_string(),
        };
        RelayConfigError::Route(redacted)
    };
    let (target, token) = text
        .split_once('=')
        .filter(|(t, k)| !t.trim().is_empty() && !k.trim().is_empty())
        .ok_or_else(shown)?;
    let target = target.trim();
    let host_name = |name: &str| {
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    let matcher = if target.starts_with('/') {
        let prefix = target.trim_end_matches('/');
        if prefix.is_empty() {
            // It would take every path from the default route (`--token`).
            return Err(RelayConfigError::RootPrefix);
        }
        RouteMatch::Prefix(prefix.to_string())
    } else if host_name(target) {
        RouteMatch::Host(target.to_ascii_lowercase())
    } else {
        return Err(shown());
    };
    Ok(Route {
        matcher,
        token: AuthToken::new(token.trim()),
    })
}

/// A token shorter than this is guessable; whoever presents it receives its route's callbacks.
const SHORT_TOKEN: usize = 16;

/// Vobiz stops waiting for an answer after about this long.
const VOBIZ_WAITS: Duration = Duration::from_secs(3);

impl RelayConfig {
    /// What is allowed but probably a mistake, one sentence each, for the start-up output.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for route in &self.routes {
            let length = route.token.expose().chars().count();
            if length < SHORT_TOKEN {
                let plural = if length == 1 { "" } else { "s" };
                warnings.push(format!(
                    "the token of route {} is {length} character{plural} long: anyone who guesses it \
                     receives that route's callbacks; use {SHORT_TOKEN} or more random \
                     characters (openssl rand -hex 16)",
                    route.name()
                ));
            }
        }
        match &self.certs {
            RelayCerts::Acme { domains, .. } => {
                // ACME orders the --domain names only: a host route outside them is served
                // a certificate for another name, which Vobiz refuses.
                for route in &self.routes {
                    if let RouteMatch::Host(host) = &route.matcher {
                        if !domains.iter().any(|d| d.eq_ignore_ascii_case(host)) {
                            warnings.push(format!(
                                "route {host} is not among the --domain names the ACME \
                                 certificate is for: Vobiz will refuse the certificate it is \
                                 shown there; add --domain {host} (its DNS must point here)"
                            ));
                        }
                    }
                }
            }
            RelayCerts::Dev { .. } if !self.domains.is_empty() => warnings.push(
                "--domain is used only with --acme: without it (or --cert/--key) the relay \
                 serves a development certificate, which Vobiz will not trust"
                    .into(),
            ),
            _ => {}
        }
        if self.hold >= VOBIZ_WAITS {
            warnings.push(format!(
                "--hold {:.1} s: Vobiz stops waiting after about {} s, so a callback held that \
                 long fails at Vobiz's end whatever the laptop answers",
                self.hold.as_secs_f64(),
                VOBIZ_WAITS.as_secs()
            ));
        }
        warnings
    }

    pub fn from_args(args: &RelayArgs) -> Result<RelayConfig, RelayConfigError> {
        let mut routes = Vec::new();
        if let Some(token) = args
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            routes.push(Route {
                matcher: RouteMatch::Any,
                token: AuthToken::new(token),
            });
        }
        for text in &args.routes {
            routes.push(parse_route(text)?);
        }
        if routes.is_empty() {
            return Err(RelayConfigError::NoToken);
        }
        for (i, route) in routes.iter().enumerate() {
            if routes[..i].iter().any(|r| r.token == route.token) {
                return Err(RelayConfigError::SharedToken(route.name()));
            }
            if routes[..i].iter().any(|r| r.matcher == route.matcher) {
                return Err(RelayConfigError::SharedRoute(route.name()));
            }
        }
        let allow = if args.vobiz_ips_only {
            let sources: Vec<&str> = if args.allow_ips.is_empty() {
                VOBIZ_CALLBACK_SOURCES.to_vec()
            } else {
                args.allow_ips.iter().map(String::as_str).collect()
            };
            Some(
                sources
                    .into_iter()
                    .map(|s| IpBlock::parse(s).ok_or_else(|| RelayConfigError::AllowIp(s.into())))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        } else {
            None
        };
        let certs = match (&args.cert, &args.key, args.acme) {
            (Some(cert), Some(key), _) => RelayCerts::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (_, _, true) => RelayCerts::Acme {
                domains: args.domains.clone(),
                email: args.acme_email.clone(),
                directory: args.acme_directory.clone(),
                directory_ca: args.acme_directory_ca.clone(),
                cache: args.acme_cache.clone().unwrap_or_else(|| {
                    crate::store::default_path()
                        .parent()
                        .map(|p| p.join("acme"))
                        .unwrap_or_else(|| PathBuf::from("acme"))
                }),
                http_listen: args.acme_http_listen,
                https_port: args.listen.port(),
            },
            _ => RelayCerts::Dev {
                dir: PathBuf::from("certs"),
            },
        };
        Ok(RelayConfig {
            listen: args.listen,
            domains: args.domains.clone(),
            certs,
            routes,
            hold: seconds("--hold", args.hold)?,
            allow,
            auth_timeout: seconds("--auth-timeout", args.auth_timeout)?,
            forward_timeout: seconds("--forward-timeout", args.forward_timeout)?,
            max_body_bytes: args.max_body,
            max_connections: args.max_connections.max(1),
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(5),
            log_format: args.log_format,
        })
    }
}

/// The laptop's side: where the relay is and how to prove who we are.
#[derive(Clone, Debug)]
pub struct RelayClientConfig {
    /// `host:port` to connect to.
    pub address: String,
    /// The name the relay's certificate must carry.
    pub server_name: String,
    pub token: AuthToken,
    /// Extra CA (PEM) trusted for the relay's certificate.
    pub ca: Option<PathBuf>,
}

impl RelayClientConfig {
    pub fn parse(
        relay: &str,
        token: Option<&str>,
        ca: Option<PathBuf>,
    ) -> Result<RelayClientConfig, RelayConfigError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(RelayConfigError::NoRelayToken)?;
        let relay = relay
            .trim()
            .trim_start_matches("https://")
            .trim_end_matches('/');
        let (host, port) = match relay.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => (
                host.trim_start_matches('[').trim_end_matches(']'),
                port.parse::<u16>()
                    .map_err(|_| RelayConfigError::RelayAddress(relay.into()))?,
            ),
            _ => (relay, 443),
        };
        if host.is_empty() || host.contains('/') {
            return Err(RelayConfigError::RelayAddress(relay.into()));
        }
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(RelayClientConfig {
            address,
            server_name: host.to_string(),
            token: AuthToken::new(token),
            ca,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_hosts_and_prefixes() {
        let route = parse_route("Alice.Hooks.example.com=s3cret").unwrap();
        assert_eq!(
            route.matcher,
            RouteMatch::Host("alice.hooks.example.com".into())
        );
        let route = parse_route("/bob/=t").unwrap();
        assert_eq!(route.matcher, RouteMatch::Prefix("/bob".into()));
        assert!(parse_route("nobody").is_err());
        assert!(parse_route("=t").is_err());
        assert!(parse_route("h.example:443=t").is_err());
        assert!(parse_route("bad host!=t").is_err());
    }

    #[test]
    fn a_route_that_is_refused_never_shows_its_token() {
        let token = "SECRETROUTETOKEN0123456789";
        for route in [
            token.to_string(),
            format!("={token}"),
            format!("bad host!={token}"),
            format!("h.example:443={token}"),
        ] {
            let error = parse_route(&route).expect_err("refused").to_string();
            assert!(!error.contains(token), "{error}");
            assert!(error.contains("SECR"), "recognisable: {error}");
        }
    }

    fn relay_config(args: &[&str]) -> RelayConfig {
        use clap::Parser;
        let argv = ["vobiz-tunnel", "relay"]
            .into_iter()
            .chain(args.iter().copied());
        match crate::cli::Cli::parse_from(argv).command {
            Some(crate::cli::Command::Relay(args)) => RelayConfig::from_args(&args).unwrap(),
            _ => unreachable!("a relay command"),
        }
    }

    #[test]
    fn certificates_that_do_not_cover_a_route_are_warned_about() {
        let token = "--route=alice.hooks.example.com=0123456789abcdef0123456789";
        let acme = relay_config(&["--acme", "--domain", "hooks.example.com", token]);
        let warnings = acme.warnings().join("\n");
        assert!(
            warnings.contains("route alice.hooks.example.com is not among the --domain names")
                && warnings.contains("add --domain alice.hooks.example.com"),
            "{warnings}"
        );
        let covered = relay_config(&[
            "--acme",
            "--domain",
            "hooks.example.com",
            "--domain",
            "Alice.Hooks.example.com",
            token,
        ]);
        assert!(covered.warnings().is_empty(), "{:?}", covered.warnings());
        let forgot_acme = relay_config(&["--domain", "hooks.example.com", token]);
        let warnings = forgot_acme.warnings().join("\n");
        assert!(
            warnings.contains("--domain is used only with --acme"),
            "{warnings}"
        );
    }

    #[test]
    fn allow_list_blocks_match() {
        let block = IpBlock::parse("18.96.230.96/28").unwrap();
        assert!(block.contains("18.96.230.100".parse().unwrap()));
        assert!(!block.contains("18.96.230.112".parse().unwrap()));
        let one = IpBlock::parse("15.206.6.156").unwrap();
        assert!(one.contains("::ffff:15.206.6.156".parse().unwrap()));
        assert!(IpBlock::parse("1.2.3.4/33").is_none());
        assert!(IpBlock::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
    }

    #[test]
    fn relay_addresses_default_to_443() {
        let c = RelayClientConfig::parse("hooks.example.com", Some("t"), None).unwrap();
        assert_eq!(
            (c.address.as_str(), c.server_name.as_str()),
            ("hooks.example.com:443", "hooks.example.com")
        );
        let c = RelayClientConfig::parse("https://localhost:8444/", Some("t"), None).unwrap();
        assert_eq!(c.address, "localhost:8444");
        let c = RelayClientConfig::parse("[::1]:9000", Some("t"), None).unwrap();
        assert_eq!(
            (c.address.as_str(), c.server_name.as_str()),
            ("[::1]:9000", "::1")
        );
        assert!(RelayClientConfig::parse("h", None, None).is_err());
    }
}
