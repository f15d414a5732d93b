//! The elements of a simulated call that talk to the caller or to other parties: prompts
//! (Speak/Play/Wait/DTMF advance the clock), Gather, Dial, Record and Conference, each making
//! the callbacks Vobiz makes for it, in Vobiz's order.

use super::call::{resolve, Flow, Simulation};
use super::call_xml::Element;
use super::catalogue::{self, Kind, Step};

impl Simulation<'_> {
    /// Conference: enter and exit callbacks around 30 s in the room (its `action` is not
    /// followed: Vobiz documents that it is not reliably invoked).
    pub(super) async fn conference(&mut self, el: &Element, base: &str) -> Result<(), String> {
        self.redirects.clear();
        let conference_uuid = self
            .conference_uuids
            .entry(el.text.clone())
            .or_insert_with(catalogue::uuid_v4)
            .clone();
        let step = Step {
            target: el.text.clone(),
            conference_uuid,
            ..self.step()
        };
        self.note(format!("Conference {}", el.text));
        let callback = el
            .url_attr("callbackUrl")
            .map(|u| resolve(base, u))
            .transpose()?;
        let method = el.method("callbackMethod");
        if let Some(url) = &callback {
            let enter = Step {
                event: "ConferenceEnter".into(),
                ..step.clone()
            };
            self.request(
                Kind::Conference,
                enter,
                "ConferenceEnter",
                &method,
                url,
                false,
            )
            .await?;
        }
        self.clock += 30.0;
        if let Some(url) = &callback {
            let exit = Step {
                event: "ConferenceExit".into(),
                at: self.clock,
                ..step
            };
            self.request(
                Kind::Conference,
                exit,
                "ConferenceExit",
                &method,
                url,
                false,
            )
            .await?;
        }
        Ok(())
    }

    /// Speak, Play, Wait, DTMF: noted, and the simulated clock advances by a plausible time.
    pub(super) fn prompt(&mut self, el: &Element) {
        let short: String = el.text.chars().take(40).collect();
        let loops = el
            .attr("loop")
            .and_then(|l| l.parse::<f64>().ok())
            .unwrap_or(1.0)
            .max(1.0);
        let (what, seconds) = match el.name.as_str() {
            "Speak" => (
                format!("Speak {short:?}"),
                (el.text.split_whitespace().count() as f64 * 0.4).max(1.0) * loops,
            ),
            "Play" => (format!("Play {short}"), 5.0 * loops),
            "Wait" => {
                let length = el
                    .attr("length")
                    .and_then(|l| l.parse::<f64>().ok())
                    .unwrap_or(1.0);
                (format!("Wait {length} s"), length)
            }
            "DTMF" => (format!("DTMF {short}"), 1.0),
            other => (format!("skipped <{other}> inside a prompt"), 0.0),
        };
        self.note(what);
        self.clock += seconds;
    }

    pub(super) async fn gather(&mut self, el: &Element, base: &str) -> Result<Flow, String> {
        el.children.iter().for_each(|c| self.prompt(c));
        self.redirects.clear();
        let input = el.attr("inputType").unwrap_or("dtmf").to_ascii_lowercase();
        let mut step = self.step();
        if input.contains("speech") && !self.speech.is_empty() {
            step.speech = self.speech.pop().unwrap_or_default();
        } else if input.contains("dtmf") && !self.digits.is_empty() {
            step.digits = self.digits.pop().unwrap_or_default();
        }
        self.clock += 3.0;
        step.at = self.clock;
        let what = match (step.digits.as_str(), step.speech.as_str()) {
            ("", "") => "Gather: timeout, no input".to_owned(),
            (digits, "") => format!("Gather: Digits={digits}"),
            (_, speech) => format!("Gather: Speech={speech:?}"),
        };
        let Some(action) = el.url_attr("action") else {
            self.note(format!("{what}; no action URL, input dropped"));
            return Ok(Flow::Next);
        };
        let url = resolve(base, action)?;
        let redirect = el.flag("redirect", true);
        let reply = self
            .request(
                Kind::Gather,
                step,
                &what,
                &el.method("method"),
                &url,
                redirect,
            )
            .await?;
        self.follow(redirect, reply, url)
    }

    pub(super) async fn dial(&mut self, el: &Element, base: &str) -> Result<Flow, String> {
        self.redirects.clear();
        let number = el
            .children
            .iter()
            .find(|c| c.name == "Number" || c.name == "User")
            .map(|c| c.text.clone())
            .unwrap_or_else(|| el.text.clone());
        let step = Step {
            target: number.clone(),
            id: catalogue::uuid_v4(),
            length: 30.0,
            ..self.step()
        };
        self.note(format!("Dial {number}"));
        self.clock += 4.0;
        let callback = el
            .url_attr("callbackUrl")
            .map(|u| resolve(base, u))
            .transpose()?;
        let method = el.method("callbackMethod");
        if let Some(url) = &callback {
            let answer = Step {
                event: "DialAnswer".into(),
                at: self.clock,
                ..step.clone()
            };
            self.request(Kind::DialStatus, answer, "DialAnswer", &method, url, false)
                .await?;
        }
        self.clock += step.length;
        if let Some(url) = &callback {
            let hangup = Step {
                event: "DialHangup".into(),
                at: self.clock,
                ..step.clone()
            };
            self.request(Kind::DialStatus, hangup, "DialHangup", &method, url, false)
                .await?;
        }
        let Some(action) = el.url_attr("action") else {
            return Ok(Flow::Next);
        };
        let url = resolve(base, action)?;
        let redirect = el.flag("redirect", true);
        let step = Step {
            at: self.clock,
            ..step
        };
        let reply = self
            .request(
                Kind::DialAction,
                step,
                "DialAction",
                &el.method("method"),
                &url,
                redirect,
            )
            .await?;
        self.follow(redirect, reply, url)
    }

    pub(super) async fn record(&mut self, el: &Element, base: &str) -> Result<Flow, String> {
        self.redirects.clear();
        let max = el
            .attr("maxLength")
            .and_then(|l| l.parse::<f64>().ok())
            .unwrap_or(60.0);
        let step = Step {
            id: catalogue::uuid_v4(),
            length: max.min(10.0),
            ..self.step()
        };
        self.note(format!("Record {} s", step.length));
        self.clock += step.length;
        // Both callbacks come once the recording is over.
        let ended = Step {
            at: self.clock,
            ..step
        };
        let redirect = el.flag("redirect", false);
        let mut flow = Ok(Flow::Next);
        if let Some(action) = el.url_attr("action") {
            let url = resolve(base, action)?;
            let reply = self
                .request(
                    Kind::Record,
                    ended.clone(),
                    "Record",
                    &el.method("method"),
                    &url,
                    redirect,
                )
                .await?;
            flow = self.follow(redirect, reply, url);
        }
        if let Some(cb) = el.url_attr("callbackUrl") {
            let url = resolve(base, cb)?;
            self.request(
                Kind::RecordCallback,
                ended,
                "RecordStop",
                &el.method("callbackMethod"),
                &url,
                false,
            )
            .await?;
        }
        flow
    }
}
