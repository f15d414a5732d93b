//! Vobiz checks: small named rules that look at a finished exchange and report what Vobiz
//! would make of it — the XML lint of answers to answer/action callbacks ([`xml`]) and the
//! delivery analysis (retries, duplicates, slow or failed answers, unsigned or foreign
//! callbacks; [`delivery`]).
//!
//! A rule is a plain function returning at most one [`Finding`]; adding a rule is adding a
//! function and its name to a list. Rule names are kebab-case and are a contract: they are
//! stored, printed in the log and shown in the UI.
//!
//! The pipeline runs [`on_received`] right after a request is recorded (duplicate detection
//! must see deliveries in arrival order, even when an earlier one is still waiting on the
//! local server) and [`findings`] in its one exit, before the record is queued and published.

pub mod delivery;
pub mod encoding;
pub mod kind;
mod tracker;
mod urls;
mod vocabulary;
pub mod xml;

#[cfg(test)]
pub(crate) mod delivery_tests;
#[cfg(test)]
mod xml_tests;

use serde::{Deserialize, Serialize};

use crate::exchange::Exchange;
use crate::relay::config::{IpBlock, VOBIZ_CALLBACK_SOURCES};

pub use kind::{callback_kind, CallbackKind};
pub use tracker::{DeliveryTracker, Earlier};
pub use urls::url_problem;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing is wrong.
    Info,
    /// Vobiz may misbehave, or a Plivo-era habit that Vobiz ignores.
    Warning,
    /// Vobiz will fail this call or retry this callback.
    Error,
}

impl Severity {
    /// Every severity, least first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Error];

    /// The severity named `name` (lower case, as serialised).
    pub fn named(name: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The lower-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing a rule found about an exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule's kebab-case name (`xml-content-type`, `duplicate-delivery`, ...).
    pub rule: String,
    pub severity: Severity,
    /// One sentence that says what is wrong and what Vobiz does about it.
    pub message: String,
}

impl Finding {
    /// `warning xml-known-elements: <GetDigits>: …`: one line, as `trigger` prints it.
    pub fn line(&self) -> String {
        format!("{} {}: {}", self.severity.as_str(), self.rule, self.message)
    }

    /// A finding of `rule`.
    pub fn new(rule: &str, severity: Severity, message: impl Into<String>) -> Finding {
        Finding {
            rule: rule.to_string(),
            severity,
            message: message.into(),
        }
    }
}

/// How many findings are warnings or errors (what the log's `⚠ N` marker counts).
pub fn warning_count(findings: &[Finding]) -> usize {
    findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .count()
}

/// What rules need beyond the exchange; one per listener, shared by all its connections.
#[derive(Debug, Default)]
pub struct Context {
    /// Recent deliveries, for `duplicate-delivery`.
    pub tracker: DeliveryTracker,
    /// Source addresses callbacks are expected from; `None` turns `outside-vobiz-sources` off.
    pub allowed_sources: Option<Vec<IpBlock>>,
}

impl Context {
    /// The default context, with the source-address rule on (against Vobiz's published
    /// addresses) when `warn_outside_sources` is set.
    pub fn new(warn_outside_sources: bool) -> Context {
        Context {
            tracker: DeliveryTracker::default(),
            allowed_sources: warn_outside_sources.then(vobiz_sources),
        }
    }
}

/// Vobiz's published callback source addresses as blocks.
pub fn vobiz_sources() -> Vec<IpBlock> {
    VOBIZ_CALLBACK_SOURCES
        .iter()
        .filter_map(|text| IpBlock::parse(text))
        .collect()
}

/// Every rule's name, for the filter's `finding:` term.
pub const RULE_NAMES: &[&str] = &[
    xml::XML_STATUS,
    xml::XML_CONTENT_TYPE,
    xml::XML_SIZE,
    xml::XML_WELL_FORMED,
    xml::XML_ROOT,
    xml::XML_KNOWN_ELEMENTS,
    xml::XML_KNOWN_ATTRIBUTES,
    xml::XML_REQUIRED_ATTRIBUTES,
    xml::XML_ACTION_URLS,
    delivery::SLOW_ANSWER,
    delivery::STATUS_CALLBACK_FAILED,
    delivery::UNSIGNED,
    delivery::DUPLICATE_DELIVERY,
    delivery::OUTSIDE_VOBIZ_SOURCES,
];

/// A rule over the exchange and the context.
pub type Rule = fn(&Exchange, &Context) -> Option<Finding>;

/// Rules run when an exchange ends, in display order.
pub const FINISH_RULES: &[Rule] = &[
    delivery::slow_answer,
    delivery::status_callback_failed,
    delivery::unsigned,
    delivery::outside_vobiz_sources,
];

/// What [`on_received`] found, and the delivery's identity for [`identify`].
#[derive(Debug, Default)]
pub struct Receipt {
    pub findings: Vec<Finding>,
    /// The key the delivery tracker remembers this callback by (see
    /// [`delivery::delivery_key`]), hashed once per request and kept for [`identify`].
    pub delivery: Option<u64>,
}

/// The rules that run as soon as a request is received, because they depend on arrival
/// order: today `duplicate-delivery` (see the module docs).
pub fn on_received(exchange: &Exchange, context: &Context) -> Receipt {
    let delivery = delivery::delivery_key(exchange, &context.tracker);
    let findings = delivery
        .and_then(|key| delivery::duplicate_delivery(exchange, context, key))
        .into_iter()
        .collect();
    Receipt { findings, delivery }
}

/// Tells the delivery tracker the id the store gave an exchange, so that later deliveries of
/// the same callback can name it (the id is known only once the exchange is written, after
/// [`on_received`] remembered the delivery as `delivery`).
pub fn identify(exchange: &Exchange, delivery: Option<u64>, context: &Context) {
    if let (Some(id), Some(key)) = (exchange.id, delivery) {
        context
            .tracker
            .identify(key, exchange.timings.received_us, id);
    }
}

/// The findings of every rule that runs at the end of an exchange: the XML lint (only for
/// callbacks that expect Vobiz XML, so ordinary status callbacks never pay for a parse),
/// then the delivery rules.
pub fn findings(exchange: &Exchange, context: &Context) -> Vec<Finding> {
    let mut found = Vec::new();
    if callback_kind(exchange).expects_xml() {
        found.extend(xml::lint(exchange));
    }
    found.extend(
        FINISH_RULES
            .iter()
            .filter_map(|rule| rule(exchange, context)),
    );
    found
}
