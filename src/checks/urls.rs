//! Whether a URL in answer XML is one Vobiz can call: absolute http(s) or relative (resolved
//! against the callback's URL), and not a host only the developer's machine can reach — the
//! most common way a local server's own address leaks into its XML.

use super::Severity;

/// What is wrong with a URL Vobiz must call, if anything.
pub fn url_problem(value: &str) -> Option<(Severity, String)> {
    let value = value.trim();
    if value.is_empty() {
        return Some((Severity::Error, "empty URL".into()));
    }
    let scheme_end = value.find([':', '/', '?', '#']);
    let Some(colon) = scheme_end.filter(|&i| value[i..].starts_with(':') && i > 0) else {
        // Relative (or scheme-relative): Vobiz resolves it against the callback's URL.
        return None;
    };
    let scheme = value[..colon].to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Some((
            Severity::Error,
            format!("not an http(s) URL (scheme {scheme:?}; write https://host/path)"),
        ));
    }
    let rest = &value[colon + 1..];
    let Some(authority) = rest.strip_prefix("//") else {
        return Some((Severity::Error, "no host after the scheme".into()));
    };
    let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Some((Severity::Error, "no host".into()));
    }
    if local_only(host) {
        return Some((
            Severity::Warning,
            format!("{host} is reachable only from this machine or network, not by Vobiz"),
        ));
    }
    None
}

/// Loopback, private and link-local hosts: a local server's own address leaking into its XML.
fn local_only(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || host.ends_with(".local") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00
        }
        Err(_) => false,
    }
}
