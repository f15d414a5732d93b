//! The elements of a simulated call that talk to the caller or to other parties: prompts
//! (Speak/Play/Wait/DTMF advance the clock), Gather, Dial, Record and Conference, each making
//! the callbacks Vobiz makes for it, in Vobiz's order.

use super::call::{resolve, Flow, Simulation};
use super::call_xml::Element;
use super::catalogue::{self, Kind, Step};

/// The longest span any attribute may move the simulated clock by.
const DAY: f64 = 86_400.0;

/// A numeric attribute of the app's XML, `default` when absent or not a number, kept within
/// `range`: `length="nan"` or `"1e300"` would make the simulated times unrepresentable, and a
/// negative one would run the clock backwards.
fn number_attr(
    el: &Element,
    name: &str,
    default: f64,
    range: std::ops::RangeInclusive<f64>,
) -> f64 {
    el.attr(name)
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|value| !value.is_nan())
        .unwrap_or(default)
        .clamp(*range.start(), *range.end())
}

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
        let loops = number_attr(el, "loop", 1.0, 1.0..=1000.0);
        let (what, seconds) = match el.name.as_str() {
            "Speak" => (
                format!("Speak {short:?}"),
                (el.text.split_whitespace().count() as f64 * 0.4).max(1.0) * loops,
            ),
            "Play" => (format!("Play {short}"), 5.0 * loops),
            "Wait" => {
                let length = number_attr(el, "length", 1.0, 0.0..=DAY);
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
        let max = number_attr(el, "maxLength", 60.0, 0.0..=DAY);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(length: &str) -> f64 {
        let xml = format!("<Response><Wait length=\"{length}\"/></Response>");
        let response = super::super::call_xml::parse(&xml).unwrap();
        number_attr(&response.children[0], "length", 1.0, 0.0..=DAY)
    }

    #[test]
    fn numbers_from_the_apps_xml_stay_representable() {
        assert_eq!(wait("5"), 5.0);
        assert_eq!(wait(" 2.5 "), 2.5);
        assert_eq!(wait("nan"), 1.0, "not a number: the default");
        assert_eq!(wait("soon"), 1.0);
        assert_eq!(wait("1e300"), DAY);
        assert_eq!(wait("inf"), DAY);
        assert_eq!(wait("-30"), 0.0, "the clock never runs backwards");
    }
}
