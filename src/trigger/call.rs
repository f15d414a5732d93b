//! `trigger call`: a simulated Vobiz call. Ring (with a ring URL), StartApp to the answer URL,
//! then the Vobiz XML that comes back is followed element by element — Speak/Play/Wait
//! advance a simulated clock, Gather/Dial/Record/Redirect/Conference make the callbacks Vobiz
//! would make — until `<Hangup>` or the XML runs out, and the hangup callback ends the call.
//! Every request is signed; the call prints as a timeline, one line per step.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::call_xml::{self, Element};
use super::catalogue::{self, CallFacts, Kind, Step, StreamEcho};
use super::public_origin::PublicOrigin;
use super::send::{self, Callback, Sender};
use crate::checks::{Finding, Severity};
use crate::cli::TriggerCallArgs;
use crate::output::say;

/// One line of the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    /// Simulated seconds since the call started.
    pub at: f64,
    /// What happened, e.g. `StartApp` or `Speak "Hi"`.
    pub what: String,
    /// For requests: method, URL, status and how long the answer took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
}

impl Line {
    fn render(&self) -> String {
        let clock = format!("{}:{:04.1}", (self.at / 60.0) as u64, self.at % 60.0);
        let mut s = format!("{clock:>8}  {:<28}", self.what);
        if let (Some(method), Some(url)) = (&self.method, &self.url) {
            s.push_str(&format!(" {method:<4} {url}"));
        }
        match (self.status, self.ms) {
            (Some(status), Some(ms)) => s.push_str(&format!("  {status}  {ms} ms")),
            (None, Some(_)) | (None, None) if self.url.is_some() => s.push_str("  (no answer)"),
            _ => {}
        }
        s.trim_end().to_owned()
    }
}

/// What to do after an element.
pub(super) enum Flow {
    /// Go on with the next element (after the last one, the XML has run out).
    Next,
    /// Replace the document with this one, fetched from this URL.
    Follow(Element, String),
    /// End the call; who hung up.
    Hangup(String),
}

/// What a request gave the call.
pub(super) enum Reply {
    /// The answer's body (empty after a failed status callback, whose answer is not read).
    Body(String),
    /// A forged callback refused, as it should be: there is no answer to follow.
    Refused,
}

/// A call in progress.
pub struct Simulation<'a> {
    sender: &'a Sender,
    /// With `--public-url`: what is sent where, and signed as what.
    public_origin: Option<PublicOrigin>,
    facts: CallFacts,
    pub(super) clock: f64,
    requests: usize,
    max_requests: usize,
    slow_after: Duration,
    pub(super) digits: Vec<String>,
    pub(super) speech: Vec<String>,
    /// Redirect targets fetched since the caller last gave input: a repeat is a loop.
    pub(super) redirects: Vec<String>,
    /// Requests that failed without stopping the call, which then fails at its end: status
    /// callbacks (Vobiz carries on after them) and, in a forgery test, forgeries accepted.
    failures: Vec<String>,
    /// Warnings of the listener's checks about the answers (see [`Simulation::warn`]).
    warnings: usize,
    /// Each conference's `ConferenceUUID` by room name: an app tracks members by it, so
    /// every callback about one room carries the same.
    pub(super) conference_uuids: HashMap<String, String>,
    print: bool,
    /// The timeline so far.
    pub lines: Vec<Line>,
}

impl<'a> Simulation<'a> {
    /// A call from `args` sending through `sender`, to the app behind `public_origin` if one
    /// is given; `print` streams the timeline to stdout.
    pub fn new(
        sender: &'a Sender,
        args: &TriggerCallArgs,
        public_origin: Option<PublicOrigin>,
        print: bool,
    ) -> Self {
        let mut digits = args.digits.clone();
        let mut speech = args.speech.clone();
        // Consumed from the end: reverse so the first given is used first.
        digits.reverse();
        speech.reverse();
        Simulation {
            sender,
            public_origin,
            facts: CallFacts::new(&args.from, &args.to_number, args.direction()),
            clock: 0.0,
            requests: 0,
            max_requests: args.max_requests,
            slow_after: Duration::from_millis(args.common.slow_after_ms),
            digits,
            speech,
            redirects: Vec::new(),
            failures: Vec::new(),
            warnings: 0,
            conference_uuids: HashMap::new(),
            print,
            lines: Vec::new(),
        }
    }

    /// The `CallUUID` every request of this call carries.
    pub fn call_uuid(&self) -> &str {
        &self.facts.call_uuid
    }

    pub(super) fn note(&mut self, what: String) {
        self.push(Line {
            at: self.clock,
            what,
            method: None,
            url: None,
            status: None,
            ms: None,
        });
    }

    fn push(&mut self, line: Line) {
        if self.print {
            say(&format!(
                "{}",
                crate::output::printable(&line.render(), false)
            ));
        }
        self.lines.push(line);
    }

    /// Sends one callback and returns what it gave. A callback whose answer is XML to
    /// follow (`xml`) stops the call when it fails: the error names the step, the URL and
    /// why. Any other (a status callback) is noted in [`Simulation::failures`] and the call
    /// goes on, as Vobiz's does after retrying it. A forged callback ([`Sender::forgery`])
    /// passes when refused and fails when accepted.
    pub(super) async fn request(
        &mut self,
        kind: Kind,
        step: Step,
        label: &str,
        method: &str,
        url: &str,
        xml: bool,
    ) -> Result<Reply, String> {
        if self.requests >= self.max_requests {
            return Err(format!(
                "stopped after {} requests (the step budget): does the XML loop?",
                self.max_requests
            ));
        }
        self.requests += 1;
        let (url, sign_url) = match &self.public_origin {
            Some(origin) => {
                let sent = origin.to_local(url);
                let signed = origin.to_public(&sent);
                (sent, signed)
            }
            None => (url.to_owned(), url.to_owned()),
        };
        let url = url.as_str();
        let callback = Callback {
            method: method.to_owned(),
            url: url.to_owned(),
            sign_url,
            fields: catalogue::fields(kind, &self.facts, &step),
        };
        let mut line = Line {
            at: self.clock,
            what: label.to_owned(),
            method: Some(method.to_owned()),
            url: Some(url.to_owned()),
            status: None,
            ms: None,
        };
        let answer = match self.sender.send(&callback).await {
            Ok(answer) => answer,
            Err(error) => {
                self.push(line);
                let failure = format!("{label}: {error}");
                self.failed(xml, kind, &error, failure)?;
                return Ok(Reply::Body(String::new()));
            }
        };
        line.status = Some(answer.status);
        line.ms = Some(answer.elapsed.as_millis() as u64);
        self.push(line);
        let forgery = self.sender.forgery();
        let reason = match forgery {
            None => {
                let judgement = send::judge(&answer, xml, self.slow_after);
                self.warn(&judgement.findings);
                judgement.failure
            }
            Some(_) if send::refused(&answer) => return Ok(Reply::Refused),
            Some(forgery) => send::judge_refusal(&answer, forgery),
        };
        let Some(reason) = reason else {
            return Ok(Reply::Body(answer.body));
        };
        let failure = format!("{label} {method} {url}: {reason}");
        if forgery.is_some() && (200..300).contains(&answer.status) {
            // The test failed, yet the call can follow what the server answered, and so
            // find every other handler that accepts a forgery. The timeline's line above
            // names the request: the reason alone follows it.
            self.note(format!("FAILED: {reason}"));
            self.failures.push(failure);
            return Ok(Reply::Body(answer.body));
        }
        self.failed(xml, kind, &reason, failure)?;
        Ok(Reply::Body(String::new()))
    }

    /// What the listener's checks would warn about the answer just noted, a line each (its
    /// errors fail the request, and are said with the failure).
    fn warn(&mut self, findings: &[Finding]) {
        for finding in findings.iter().filter(|f| f.severity != Severity::Error) {
            self.warnings += 1;
            self.note(finding.line());
        }
    }

    /// A request failed: one whose answer is XML to follow (`xml`) stops the call with
    /// `failure` as the error; a status callback is noted (with the `reason` alone: the
    /// timeline's line above names the request), and the call goes on.
    fn failed(
        &mut self,
        xml: bool,
        kind: Kind,
        reason: &str,
        failure: String,
    ) -> Result<(), String> {
        if xml {
            return Err(failure);
        }
        // In a forgery test the call goes on regardless: nothing to say about Vobiz. After
        // the hangup there is no call left to go on.
        let goes_on = match (self.sender.forgery(), kind) {
            (Some(_), _) => "",
            (None, Kind::Hangup) => "; Vobiz would retry it",
            (None, _) => "; the call goes on (Vobiz retries, then carries on)",
        };
        self.note(format!("FAILED: {reason}{goes_on}"));
        self.failures.push(failure);
        Ok(())
    }

    /// What follows a request whose answer, with `redirect`, is the XML to go on with,
    /// fetched from `url`.
    pub(super) fn follow(
        &mut self,
        redirect: bool,
        reply: Reply,
        url: String,
    ) -> Result<Flow, String> {
        match (redirect, reply) {
            (false, _) => Ok(Flow::Next),
            (true, Reply::Body(body)) => Ok(Flow::Follow(call_xml::parse(&body)?, url)),
            (true, Reply::Refused) => {
                self.note("refused: no XML to follow, Vobiz hangs up".into());
                Ok(Flow::Hangup("Vobiz".into()))
            }
        }
    }

    /// Plays `doc`, fetched from `url`, element by element, up to what ends it: XML to
    /// follow, a hangup, or [`Flow::Next`] when it runs out.
    async fn play(&mut self, doc: Element, url: &str) -> Result<Flow, String> {
        for element in &doc.children {
            match self.element(element, url).await? {
                Flow::Next => {}
                end => return Ok(end),
            }
        }
        Ok(Flow::Next)
    }

    /// Runs the call to its end; the error is the reason it stopped early.
    pub async fn run(&mut self, args: &TriggerCallArgs) -> Result<(), String> {
        let answer_url = args.answer_url.clone();
        if let Some(ring) = &args.ring_url {
            self.request(Kind::Ring, Step::default(), "Ring", "POST", ring, false)
                .await?;
        }
        // Answered after two seconds of ringing; Hangup's Duration counts from here.
        self.clock = 2.0;
        let method = args.answer_method.to_ascii_uppercase();
        let reply = self
            .request(
                Kind::Answer,
                self.step(),
                "StartApp",
                &method,
                &answer_url,
                true,
            )
            .await?;
        let mut next = self.follow(true, reply, answer_url)?;
        let source = loop {
            match next {
                Flow::Follow(doc, url) => next = self.play(doc, &url).await?,
                Flow::Hangup(source) => break source,
                Flow::Next => {
                    self.note("end of XML: Vobiz hangs up".into());
                    break "Vobiz".to_owned();
                }
            }
        };
        let hangup_url = args
            .hangup_url
            .clone()
            .unwrap_or_else(|| args.answer_url.clone());
        let step = Step {
            hangup_source: source,
            ..self.step()
        };
        self.request(Kind::Hangup, step, "Hangup", "POST", &hangup_url, false)
            .await?;
        Ok(())
    }

    pub(super) fn step(&self) -> Step {
        Step {
            at: self.clock,
            ..Step::default()
        }
    }

    /// Plays one element of the document fetched from `base`.
    async fn element(&mut self, el: &Element, base: &str) -> Result<Flow, String> {
        match el.name.as_str() {
            "Speak" | "Play" | "Wait" | "DTMF" => self.prompt(el),
            "PreAnswer" => el.children.iter().for_each(|c| self.prompt(c)),
            "Stream" => {
                self.note(format!("Stream {}", el.text));
                if let Some(cb) = el.url_attr("statusCallbackUrl") {
                    let url = resolve(base, cb)?;
                    let method = el.method("statusCallbackMethod");
                    let step = Step {
                        stream: StreamEcho {
                            service_url: el.text.clone(),
                            status_callback_url: url.clone(),
                            status_callback_method: method.clone(),
                        },
                        ..self.step()
                    };
                    self.request(
                        Kind::StreamStatus,
                        step,
                        "StartStream",
                        &method,
                        &url,
                        false,
                    )
                    .await?;
                }
            }
            "Gather" => return self.gather(el, base).await,
            "Dial" => return self.dial(el, base).await,
            "Record" => return self.record(el, base).await,
            "Conference" => self.conference(el, base).await?,
            "Redirect" => {
                let url = resolve(base, &el.text)?;
                if self.redirects.contains(&url) {
                    self.redirects.push(url);
                    return Err(format!(
                        "redirect loop with no caller input in between: {}",
                        self.redirects.join(" → ")
                    ));
                }
                self.redirects.push(url.clone());
                let reply = self
                    .request(
                        Kind::Redirect,
                        self.step(),
                        "Redirect",
                        &el.method("method"),
                        &url,
                        true,
                    )
                    .await?;
                return self.follow(true, reply, url);
            }
            "Hangup" => {
                let reason = el
                    .attr("reason")
                    .map(|r| format!(" (reason {r})"))
                    .unwrap_or_default();
                self.note(format!("<Hangup>{reason}"));
                return Ok(Flow::Hangup("Answer XML".into()));
            }
            other => self.note(format!("skipped <{other}>: not a Vobiz element")),
        }
        Ok(Flow::Next)
    }
}

/// Resolves a URL from the XML against the URL the XML came from, as RFC 3986 §5.2 says
/// (as HTTP clients do): `../x` and `./x` are taken out of the path, `?q` keeps the path, a
/// scheme is matched in any case, a fragment is dropped (it is never sent).
pub fn resolve(base: &str, reference: &str) -> Result<String, String> {
    let reference = reference.trim();
    if reference.is_empty() {
        return Err("an empty URL in the XML".into());
    }
    let reference = reference.split('#').next().unwrap_or_default();
    if let Some((scheme, rest)) = scheme_of(reference) {
        return match scheme.to_ascii_lowercase().as_str() {
            _ if !rest.starts_with("//") => Err(format!("{reference}: no host after {scheme}:")),
            scheme @ ("http" | "https") => Ok(absolute(scheme, rest)),
            other => Err(format!(
                "{reference}: Vobiz calls only http(s) URLs, not {other}"
            )),
        };
    }
    let uri: hyper::Uri = base.parse().map_err(|e| format!("{base}: {e}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("{base} is not an absolute URL"));
    };
    if reference.starts_with("//") {
        return Ok(absolute(scheme, reference));
    }
    let (path, query) = match reference.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (reference, None),
    };
    let path = match path {
        "" => uri.path().to_owned(),
        absolute if absolute.starts_with('/') => remove_dot_segments(absolute),
        relative => {
            let directory = &uri.path()[..uri.path().rfind('/').map_or(0, |at| at + 1)];
            remove_dot_segments(&format!("{directory}{relative}"))
        }
    };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let query = match query {
        Some(query) => format!("?{query}"),
        // Only a fragment (`#s`): this very URL.
        None if reference.is_empty() => uri.query().map(|q| format!("?{q}")).unwrap_or_default(),
        None => String::new(),
    };
    Ok(format!("{scheme}://{authority}{path}{query}"))
}

/// `HTTPS://h/p` as `https://h/p`: the scheme in lower case, `rest` (from `//`) as it is,
/// its dot segments taken out.
fn absolute(scheme: &str, rest: &str) -> String {
    let Some(after) = rest.strip_prefix("//") else {
        return format!("{scheme}:{rest}");
    };
    let split = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, target) = after.split_at(split);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (target, String::new()),
    };
    let path = match remove_dot_segments(path) {
        path if path.is_empty() => "/".to_owned(),
        path => path,
    };
    format!("{scheme}://{authority}{path}{query}")
}

/// The scheme of a reference that has one (RFC 3986 §3.1: a letter, then letters, digits,
/// `+`, `-`, `.`, then `:`), and what follows the colon.
fn scheme_of(reference: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = reference.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (valid && !scheme.contains('/')).then_some((scheme, rest))
}

/// RFC 3986 §5.2.4: `/a/b/../c/./d` is `/a/c/d`.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." && output.len() > 1 {
                    output.pop();
                }
                // A path ending in a dot segment names the directory: keep its slash.
                if index == last {
                    output.push("");
                }
            }
            other => output.push(other),
        }
    }
    output.join("/")
}

/// Runs `trigger call`; returns the exit status.
pub async fn call_command(args: &TriggerCallArgs) -> anyhow::Result<i32> {
    for (flag, url) in [
        ("--answer-url", Some(&args.answer_url)),
        ("--hangup-url", args.hangup_url.as_ref()),
        ("--ring-url", args.ring_url.as_ref()),
    ] {
        if let Some(url) = url {
            resolve(url, "/").map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        }
    }
    let public_origin = args
        .public_url
        .as_deref()
        .map(|public| PublicOrigin::new(public, &args.answer_url))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--public-url: {e}"))?;
    let sender = super::sender(&args.common)?;
    let json = args.common.json;
    let mut sim = Simulation::new(&sender, args, public_origin.clone(), !json);
    if !json {
        say(&format!(
            "call {} from {} to {} ({})",
            sim.call_uuid(),
            args.from,
            args.to_number,
            args.direction()
        ));
    }
    let forgery = sender.forgery();
    if let (Some(origin), false) = (&public_origin, json) {
        say(&format!(
            "requests to {} are signed for {} (--public-url), as Vobiz signs what it calls",
            origin.local(),
            origin.public()
        ));
    }
    if let (Some(forgery), false) = (forgery, json) {
        say(&format!(
            "every request is {}: your server should refuse each (401 or 403)",
            forgery.described()
        ));
    }
    let result = sim.run(args).await;
    let went_on = match forgery {
        Some(forgery) => format!("your server must refuse {}", forgery.described()),
        None => "the call went on past them, as Vobiz's does".to_owned(),
    };
    // Why the call failed: what stopped it, or else the requests that failed.
    let error = match (&result, sim.failures.as_slice()) {
        (Err(stopped), _) => Some(stopped.clone()),
        (Ok(()), []) => None,
        (Ok(()), failures) => Some(format!(
            "{} of {} requests failed ({went_on})",
            failures.len(),
            sim.requests
        )),
    };
    if json {
        let value = serde_json::json!({
            "call_uuid": sim.call_uuid(),
            "steps": sim.lines,
            "ok": error.is_none(),
            "error": error,
            "failures": sim.failures,
        });
        say(&value.to_string());
    } else {
        match &error {
            None => match forgery {
                Some(forgery) => say(&format!(
                    "call completed: your server refused all {} requests, each {}, as it should",
                    sim.requests,
                    forgery.described()
                )),
                None => match sim.warnings {
                    0 => say(&format!("call completed: {} requests", sim.requests)),
                    1 => say(&format!(
                        "call completed: {} requests, with 1 warning (above)",
                        sim.requests
                    )),
                    warnings => say(&format!(
                        "call completed: {} requests, with {warnings} warnings (above)",
                        sim.requests
                    )),
                },
            },
            Some(error) => {
                say(&format!(
                    "call FAILED: {}",
                    crate::output::printable(error, false)
                ));
                for failure in &sim.failures {
                    say(&format!("  {}", crate::output::printable(failure, false)));
                }
            }
        }
    }
    Ok(if error.is_none() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_resolve_against_the_current_one() {
        let base = "https://h:8443/app/answer?x=1";
        assert_eq!(resolve(base, "/gather").unwrap(), "https://h:8443/gather");
        assert_eq!(resolve(base, "next").unwrap(), "https://h:8443/app/next");
        assert_eq!(resolve(base, "//o/p").unwrap(), "https://o/p");
        assert_eq!(resolve(base, "http://e/x").unwrap(), "http://e/x");
        assert!(resolve(base, " ").is_err());
    }

    /// RFC 3986 §5.4's examples, with the base `http://a/b/c/d;p?q`.
    #[test]
    fn resolution_follows_rfc_3986() {
        let base = "http://a/b/c/d;p?q";
        for (reference, resolved) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("HTTPS://e/x/../y", "https://e/y"),
            ("Http://e", "http://e/"),
        ] {
            let got = if reference.is_empty() {
                // An empty URL in the XML is a mistake, not "this document again".
                assert!(resolve(base, reference).is_err());
                continue;
            } else {
                resolve(base, reference).unwrap()
            };
            assert_eq!(got, resolved, "{reference}");
        }
        assert!(resolve(base, "ftp://e/x").unwrap_err().contains("not ftp"));
        assert!(resolve(base, "http:g")
            .unwrap_err()
            .contains("no host after http:"));
        assert_eq!(
            resolve("https://h/s7/answer", "../s7/rec").unwrap(),
            "https://h/s7/rec"
        );
        assert_eq!(
            resolve("https://h/s7/answer", "?cb=1").unwrap(),
            "https://h/s7/answer?cb=1"
        );
    }
}
