//! Near-miss search: when nothing verifies, say what *would* have verified.
//!
//! Most real failures are not forgeries but a URL that differs from the one Vobiz signed
//! (a proxy changed the scheme or port, a trailing slash, a host typed in capitals), the
//! wrong one of the main/sub-account tokens, or headers copied into the wrong place. This
//! file tries a fixed, small set of single changes — URL variants × configured keys ×
//! headers present × the two V3 forms, each list capped — and reports the first that
//! matches as a [`NearMiss`] with a sentence the user can act on. It only runs on failures.

use super::algorithm;
use super::verify::{header, Ctx, Labeled};
use super::{Form, HeaderCheck, NearMiss, Scheme, Verdict, VerdictStatus};

/// Caps that keep the search bounded whatever the configuration: at most
/// 15 URL variants × 4 headers × 8 keys × 2 forms HMACs.
const MAX_KEYS: usize = 8;
const MAX_EXTRA_PORTS: usize = 8;

/// Start of the sentence for URL variants (also recognised by [`summary`]).
const CALLED: &str = "Would be valid if Vobiz had called ";

/// A URL as the variants need it. All slices of the original, so splitting cannot fail.
#[derive(Clone, Copy)]
struct UrlParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
    path: &'a str,
    /// `?query#fragment`, untouched.
    tail: &'a str,
}

impl<'a> UrlParts<'a> {
    fn parse(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let (path, tail) = after.split_at(after.find(['?', '#']).unwrap_or(after.len()));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        // In an IPv6 literal (`[::1]:8443`) only a colon after the `]` starts the port.
        let from = hostport.rfind(']').map_or(0, |i| i + 1);
        let colon = hostport
            .get(from..)
            .and_then(|s| s.rfind(':'))
            .map(|i| i + from);
        let (host, port) = match colon.map(|i| hostport.split_at(i)) {
            Some((h, p)) if p.bytes().skip(1).all(|b| b.is_ascii_digit()) => (h, p.get(1..)),
            _ => (hostport, None),
        };
        Some(UrlParts {
            scheme,
            userinfo,
            host,
            port,
            path,
            tail,
        })
    }

    fn build(&self) -> String {
        let mut s = format!("{}://", self.scheme);
        if let Some(u) = self.userinfo {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(self.host);
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(p);
        }
        s.push_str(self.path);
        s.push_str(self.tail);
        s
    }
}

/// One URL Vobiz might have signed instead of the one we saw.
struct Variant {
    what: String,
    url: String,
    /// The docs base keeps `?query` (fragment still dropped) instead of stripping it.
    keep_query: bool,
}

/// The candidate URLs, most common mistakes first, without duplicates or the original.
fn url_variants(url: &str, extra_ports: &[u16]) -> Vec<Variant> {
    let mut out: Vec<Variant> = Vec::new();
    let Some(p) = UrlParts::parse(url) else {
        return out;
    };
    let mut add = |what: String, u: UrlParts<'_>| {
        let built = u.build();
        if built != url && !out.iter().any(|v| v.url == built) {
            out.push(Variant {
                what,
                url: built,
                keep_query: false,
            });
        }
    };
    let scheme = p.scheme.to_ascii_lowercase();
    let (other, default_port) = match scheme.as_str() {
        "https" => (Some("http"), Some("443")),
        "http" => (Some("https"), Some("80")),
        _ => (None, None),
    };
    if let Some(other) = other {
        add(
            format!("{other} instead of {scheme}"),
            UrlParts { scheme: other, ..p },
        );
    }
    match (p.port, default_port) {
        (Some(port), default) => {
            add(format!("port {port} removed"), UrlParts { port: None, ..p });
            // Vobiz called the default port by name (`:443`), a port-forward brought it here.
            if let Some(d) = default.filter(|&d| d != port) {
                add(
                    format!("port {d} instead of {port}"),
                    UrlParts { port: Some(d), ..p },
                );
            }
        }
        (None, Some(d)) => add(format!("port {d} added"), UrlParts { port: Some(d), ..p }),
        (None, None) => {}
    }
    for port in extra_ports.iter().take(MAX_EXTRA_PORTS).map(u16::to_string) {
        let what = match p.port {
            None => format!("port {port} added"),
            Some(cur) => format!("port {port} instead of {cur}"),
        };
        add(
            what,
            UrlParts {
                port: Some(&port),
                ..p
            },
        );
    }
    let slash = format!("{}/", p.path);
    match p.path.strip_suffix('/') {
        Some("") => {}
        Some(path) => add("trailing slash removed".into(), UrlParts { path, ..p }),
        None => add(
            "trailing slash added".into(),
            UrlParts { path: &slash, ..p },
        ),
    }
    let path = &algorithm::percent_decode(p.path);
    add(
        "path percent-decoded, as the Go SDK does".into(),
        UrlParts { path, ..p },
    );
    let host = &p.host.to_lowercase();
    add("host lower-cased".into(), UrlParts { host, ..p });
    add(
        "user info removed".into(),
        UrlParts {
            userinfo: None,
            ..p
        },
    );
    // Two changes that come together: a tunnel or proxy in front that ends TLS on its
    // default port (Vobiz called `http://host/cb`, the listener saw `https://host:8443/cb`).
    if let (Some(other), Some(port)) = (other, p.port) {
        add(
            format!("{other} instead of {scheme}, and port {port} removed"),
            UrlParts {
                scheme: other,
                port: None,
                ..p
            },
        );
    }
    if algorithm::split_url(url).1.is_some_and(|q| !q.is_empty()) {
        let kept = url.split('#').next().unwrap_or_default().to_owned();
        out.push(Variant {
            what: "query kept".into(),
            url: kept,
            keep_query: true,
        });
    }
    out
}

/// Tries `value` against `url` (docs form, then SDK form for V3) with up to `MAX_KEYS` keys.
fn try_match<'c>(
    ctx: &Ctx<'_, '_>,
    keys: &'c [Labeled<'_>],
    v3: bool,
    var: &Variant,
    nonce: &str,
    value: &str,
) -> Option<(&'c str, Form)> {
    if keys.is_empty() {
        return None;
    }
    let base = match var.keep_query {
        true => var.url.as_str(),
        false => algorithm::split_url(&var.url).0,
    };
    let docs = match v3 {
        true => algorithm::v3_docs_string(base, nonce),
        false => algorithm::v2_string(base, nonce),
    };
    let sdk = (v3 && !var.keep_query)
        .then(|| ctx.sdk_string(&var.url, nonce))
        .flatten();
    let forms = [
        (Form::Docs, Some(docs.clone())),
        (Form::Sdk, sdk.filter(|s| *s != docs)),
    ];
    for (form, sts) in forms.iter().filter_map(|(f, s)| Some((*f, s.as_deref()?))) {
        for k in keys.iter().take(MAX_KEYS) {
            let expected = k.token.sign_sha256(sts);
            if algorithm::matching_member(value, &expected).is_some() {
                return Some((&k.label, form));
            }
        }
    }
    None
}

/// The first single change that makes one of `checks` (decisive headers) verify.
pub(super) fn near_miss(ctx: &Ctx<'_, '_>, checks: &[HeaderCheck]) -> Option<NearMiss> {
    // Only headers with a value and a nonce can be reasoned about.
    let usable: Vec<(&HeaderCheck, &str)> = checks
        .iter()
        .filter(|c| algorithm::members(&c.value).next().is_some())
        .filter_map(|c| Some((c, c.nonce.as_deref().filter(|n| !n.is_empty())?)))
        .collect();
    let miss = |what: &str, url: &str, c: &HeaderCheck, key: &str, form: Form, sentence: String| {
        NearMiss {
            variant: what.to_owned(),
            url: url.to_owned(),
            header: c.header.clone(),
            key: key.to_owned(),
            form,
            sentence,
        }
    };
    // 1. A URL the listener has reason to think Vobiz called instead (a wrong --public-url, a
    //    proxy in front), then variants of the one checked; with the keys of the header's
    //    own kind.
    for other in ctx.req.other_urls {
        let var = Variant {
            what: other.what.clone(),
            url: other.url.clone(),
            keep_query: false,
        };
        for &(c, nonce) in &usable {
            let keys = ctx.keys_for(c.scheme);
            if let Some((key, form)) = try_match(ctx, keys, c.scheme.is_v3(), &var, nonce, &c.value)
            {
                let sentence = format!(
                    "Would be valid for {}, {}: {}",
                    other.shown, other.what, other.advice
                );
                return Some(miss(&other.what, &other.shown, c, key, form, sentence));
            }
        }
    }
    for var in url_variants(ctx.req.url, ctx.req.extra_ports) {
        for &(c, nonce) in &usable {
            if let Some((key, form)) = try_match(
                ctx,
                ctx.keys_for(c.scheme),
                c.scheme.is_v3(),
                &var,
                nonce,
                &c.value,
            ) {
                let sdk = if form == Form::Sdk { ", SDK form" } else { "" };
                let sentence = match var.keep_query {
                    true => format!(
                        "Would be valid if the signed URL kept its query string: {} ({}{sdk})",
                        var.url, var.what
                    ),
                    false => format!("{CALLED}{} ({}{sdk})", var.url, var.what),
                };
                return Some(miss(&var.what, &var.url, c, key, form, sentence));
            }
        }
    }
    let orig = Variant {
        what: String::new(),
        url: ctx.req.url.to_owned(),
        keep_query: false,
    };
    // 2. The other account's token: main ↔ sub-account tokens mixed up in the configuration.
    for &(c, nonce) in &usable {
        let (other, role) = match c.scheme.is_main() {
            true => (&ctx.auth, "the main auth token (--main-auth-token)"),
            false => (&ctx.main, "the auth token (--auth-token)"),
        };
        if let Some((key, form)) = try_match(ctx, other, c.scheme.is_v3(), &orig, nonce, &c.value) {
            let what = "main and sub-account tokens mixed up";
            let sentence = format!(
                "Would be valid with {key} configured as {role}: {} is signed with it ({what})",
                c.header
            );
            return Some(miss(what, &orig.url, c, key, form, sentence));
        }
    }
    // 3. V2 and V3 headers swapped: the value checked with the other algorithm, with the
    //    header's own nonce first, then the other nonce header's.
    for &(c, nonce) in &usable {
        let (as_v3, counterpart) = match c.scheme {
            Scheme::V2 | Scheme::MaV2 => (true, "V3"),
            _ => (false, "V2"),
        };
        let other_nonce = match as_v3 {
            true => Scheme::V3.nonce_header(),
            false => Scheme::V2.nonce_header(),
        };
        let other_nonce = other_nonce
            .and_then(|h| header(ctx.req.headers, h).next())
            .filter(|n| *n != nonce);
        for n in std::iter::once(nonce).chain(other_nonce) {
            if let Some((key, form)) =
                try_match(ctx, ctx.keys_for(c.scheme), as_v3, &orig, n, &c.value)
            {
                let what = "V2/V3 headers swapped";
                let sentence = format!(
                    "Would be valid if the V2 and V3 headers were swapped: \
                     {} holds a {counterpart} signature ({what})",
                    c.header
                );
                return Some(miss(what, &orig.url, c, key, form, sentence));
            }
        }
    }
    // 4. The nonce headers swapped: the value checked with its own algorithm and the other
    //    nonce header's value (a signer that reads the V2 nonce for V3, or the reverse).
    for &(c, nonce) in &usable {
        let (own, other) = match c.scheme.is_v3() {
            true => (Scheme::V3, Scheme::V2),
            false => (Scheme::V2, Scheme::V3),
        };
        let (Some(own_header), Some(other_header)) = (own.nonce_header(), other.nonce_header())
        else {
            continue;
        };
        let Some(other_nonce) = header(ctx.req.headers, other_header)
            .next()
            .filter(|n| !n.is_empty() && *n != nonce)
        else {
            continue;
        };
        let keys = ctx.keys_for(c.scheme);
        if let Some((key, form)) =
            try_match(ctx, keys, c.scheme.is_v3(), &orig, other_nonce, &c.value)
        {
            let what = "V2/V3 nonces swapped";
            let sentence = format!(
                "Would be valid if the nonce headers were swapped: {} is signed with the \
                 nonce in {other_header}, not {own_header} ({what})",
                c.header
            );
            return Some(miss(what, &orig.url, c, key, form, sentence));
        }
    }
    None
}

/// One line for [`Verdict::summary`].
pub(super) fn summary(v: &Verdict) -> String {
    let status = v.status.as_str();
    let detail = match v.status {
        VerdictStatus::Valid => {
            let mut parts: Vec<&str> = Vec::with_capacity(3);
            parts.extend(v.scheme.as_ref().map(Scheme::as_str));
            parts.extend(v.form.as_ref().map(Form::describe));
            parts.extend(v.key.as_deref());
            return format!("{status} ({})", parts.join(", "));
        }
        VerdictStatus::Unsigned if v.checks.is_empty() => {
            return format!("{status} (no signature headers)")
        }
        VerdictStatus::Unsigned => {
            let other = v.checks.first().and_then(super::verify::other_product);
            return match other {
                Some(_) => format!("{status} (another Vobiz product's signature)"),
                None => format!("{status} (legacy V1 signature only)"),
            };
        }
        VerdictStatus::Unchecked => {
            return format!("{status} (no token configured for these headers)")
        }
        // The near-miss sentence with what differs, without the form and explanatory tail.
        VerdictStatus::Invalid => match &v.would_match {
            Some(nm) if nm.sentence.starts_with(CALLED) => {
                format!("{CALLED}{} ({})", nm.url, nm.variant)
            }
            Some(nm) => nm
                .sentence
                .split(": ")
                .next()
                .unwrap_or_default()
                .to_owned(),
            // `Verdict::explanation_beyond_summary` then leaves this sentence out.
            None => v.explanation.first().cloned().unwrap_or_default(),
        },
    };
    let detail = detail.trim_end_matches('.');
    // Lower-case a leading word ("Would be…") but not a header name ("X-Vobiz-…").
    let mut chars = detail.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if b.is_lowercase() => {
            format!("{status}: {}{b}{}", a.to_lowercase(), chars.as_str())
        }
        (Some(_), _) => format!("{status}: {detail}"),
        (None, _) => status.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_round_trip_and_split() {
        for url in [
            "https://u:p@[::1]:8443/a/b?q=1#f",
            "http://h",
            "https://h:/x",
            "x://h:abc/?#",
        ] {
            assert_eq!(
                UrlParts::parse(url).map(|p| p.build()).as_deref(),
                Some(url)
            );
        }
        let p = UrlParts::parse("https://u:p@[::1]:8443/a/b?q=1#f").expect("parses");
        assert_eq!(
            (p.userinfo, p.host, p.port, p.path, p.tail),
            (Some("u:p"), "[::1]", Some("8443"), "/a/b", "?q=1#f")
        );
        let p = UrlParts::parse("https://h:abc/x").expect("parses");
        assert_eq!((p.host, p.port), ("h:abc", None));
        assert!(UrlParts::parse("not a url").is_none());
    }

    #[test]
    fn variants_are_deduplicated_and_bounded() {
        let whats: Vec<String> = url_variants("https://e.com/cb?x=1", &[443, 8443, 8443])
            .into_iter()
            .map(|v| v.what)
            .collect();
        assert_eq!(
            whats,
            [
                "http instead of https",
                "port 443 added",
                "port 8443 added",
                "trailing slash added",
                "query kept"
            ]
        );
        let ports: Vec<u16> = (1..=1000).collect();
        let all = url_variants("https://u@E.com/a%20b/?q", &ports);
        assert!(all.len() <= 16, "{}", all.len());
        assert!(all.iter().any(|v| v.url == "https://u@e.com/a%20b/?q"));
        assert!(all.iter().any(|v| v.url == "https://u@E.com/a b/?q"));
        assert!(all.iter().any(|v| v.url == "https://E.com/a%20b/?q"));
        assert!(url_variants("garbage", &ports).is_empty());
    }

    #[test]
    fn a_port_is_tried_removed_and_as_the_default_by_name() {
        let variants: Vec<(String, String)> = url_variants("https://e.com:8443/cb", &[])
            .into_iter()
            .map(|v| (v.what, v.url))
            .collect();
        let port_variants: Vec<_> = variants
            .iter()
            .filter(|(w, _)| w.starts_with("port"))
            .collect();
        assert_eq!(
            port_variants,
            [
                &("port 8443 removed".into(), "https://e.com/cb".into()),
                &(
                    "port 443 instead of 8443".into(),
                    "https://e.com:443/cb".into()
                ),
            ]
        );
        let explicit = url_variants("https://e.com:443/cb", &[]);
        assert!(!explicit.iter().any(|v| v.what.contains("instead of 443")));
    }

    /// A proxy that ends TLS: the scheme and the port differ together.
    #[test]
    fn scheme_and_port_are_tried_changed_together() {
        let both = url_variants("https://e.com:8443/cb", &[])
            .into_iter()
            .find(|v| v.url == "http://e.com/cb")
            .expect("tried");
        assert_eq!(both.what, "http instead of https, and port 8443 removed");
    }
}
