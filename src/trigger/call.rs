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
use super::send::{self, Callback, Sender};
use crate::cli::TriggerCallArgs;

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
    /// Each conference's `ConferenceUUID` by room name: an app tracks members by it, so
    /// every callback about one room carries the same.
    pub(super) conference_uuids: HashMap<String, String>,
    print: bool,
    /// The timeline so far.
    pub lines: Vec<Line>,
}

impl<'a> Simulation<'a> {
    /// A call from `args` sending through `sender`; `print` streams the timeline to stdout.
    pub fn new(sender: &'a Sender, args: &TriggerCallArgs, print: bool) -> Self {
        let mut digits = args.digits.clone();
        let mut speech = args.speech.clone();
        // Consumed from the end: reverse so the first given is used first.
        digits.reverse();
        speech.reverse();
        Simulation {
            sender,
            facts: CallFacts::new(&args.from, &args.to_number, args.direction()),
            clock: 0.0,
            requests: 0,
            max_requests: args.max_requests,
            slow_after: Duration::from_millis(args.common.slow_after_ms),
            digits,
            speech,
            redirects: Vec::new(),
            failures: Vec::new(),
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
            println!("{}", crate::output::printable(&line.render(), false));
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
        let callback = Callback {
            method: method.to_owned(),
            url: url.to_owned(),
            sign_url: url.to_owned(),
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
            None => send::judge(&answer, xml, self.slow_after),
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

/// Resolves a URL from the XML against the URL the XML came from (RFC 3986 in the simple
/// cases Vobiz XML uses: absolute, `//host/…`, `/path`, `relative`).
pub fn resolve(base: &str, reference: &str) -> Result<String, String> {
    let reference = reference.trim();
    if reference.is_empty() {
        return Err("an empty URL in the XML".into());
    }
    if reference.starts_with("http://") || reference.starts_with("https://") {
        return Ok(reference.to_owned());
    }
    let uri: hyper::Uri = base.parse().map_err(|e| format!("{base}: {e}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("{base} is not an absolute URL"));
    };
    if let Some(rest) = reference.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if reference.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{reference}"));
    }
    let dir = uri.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    Ok(format!("{scheme}://{authority}{dir}/{reference}"))
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
    let sender = super::sender(&args.common)?;
    let json = args.common.json;
    let mut sim = Simulation::new(&sender, args, !json);
    if !json {
        println!(
            "call {} from {} to {} ({})",
            sim.call_uuid(),
            args.from,
            args.to_number,
            args.direction()
        );
    }
    let forgery = sender.forgery();
    if let (Some(forgery), false) = (forgery, json) {
        println!(
            "every request is {}: your server should refuse each (401 or 403)",
            forgery.described()
        );
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
        println!("{value}");
    } else {
        match &error {
            None => match forgery {
                Some(forgery) => println!(
                    "call completed: your server refused all {} requests, each {}, as it should",
                    sim.requests,
                    forgery.described()
                ),
                None => println!("call completed: {} requests", sim.requests),
            },
            Some(error) => {
                println!("call FAILED: {}", crate::output::printable(error, false));
                for failure in &sim.failures {
                    println!("  {}", crate::output::printable(failure, false));
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
}
