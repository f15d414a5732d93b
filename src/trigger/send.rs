//! Building, signing and sending one synthetic callback, and the HTTP(S) client that sends
//! it: the development CA is trusted, and `--insecure` swaps in a verifier that accepts any
//! certificate ([`AcceptAnyCertificate`], never used without that flag).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::no_answer::Trust;
use crate::checks::delivery::status_answer_finding;
use crate::checks::encoding::decoded;
use crate::checks::xml::lint_answer;
use crate::checks::{Finding, Severity};
use crate::forward::error_chain;
use crate::signature::{signed_headers, AuthToken, Form, SigningKeys};

/// Largest answer read; Vobiz itself refuses XML over 100 KB.
const MAX_ANSWER: usize = 1 << 20;

/// How a callback is signed.
#[derive(Clone, Debug)]
pub enum Signing {
    /// Like Vobiz: V1, V2, V3 (docs form) and, with a main token, -MA-V2/-MA-V3.
    Signed(SigningKeys),
    /// No signature headers, for want of a token: the answer is judged as Vobiz judges it.
    Unsigned,
    /// A forgery, sent to test that the server refuses it.
    Forged(Forgery),
}

/// A callback no server should accept, sent by `--unsigned` or `--bad-signature` to test that
/// the server refuses it: here a refusal (4xx) passes and acceptance (2xx) fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    /// No signature headers at all.
    Unsigned,
    /// Headers of the right shape whose signatures do not verify.
    BadSignature,
}

impl Forgery {
    /// What was sent, for messages: `a callback with no signature`.
    pub fn described(self) -> &'static str {
        match self {
            Forgery::Unsigned => "a callback with no signature",
            Forgery::BadSignature => "a callback whose signature does not verify",
        }
    }
}

/// One callback ready to send.
#[derive(Clone, Debug)]
pub struct Callback {
    /// `POST` or `GET`.
    pub method: String,
    /// Where it is sent.
    pub url: String,
    /// The URL signed (the URL configured at Vobiz); usually `url`.
    pub sign_url: String,
    /// Form fields, in the order sent.
    pub fields: Vec<(String, String)>,
}

/// What came back.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `Content-Encoding` Vobiz could not undo (gzip is undone in `body`).
    pub content_encoding: Option<String>,
    /// The body, gzip undone (lossy UTF-8; answers are XML or text).
    pub body: String,
    /// From sending to the end of the body.
    pub elapsed: Duration,
}

/// Sends callbacks: a pooled client plus how to sign them.
pub struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    signing: Signing,
    trust: Trust,
    timeout: Duration,
}

impl Sender {
    /// A client trusting the web PKI and the dev CA of `trust` (or anything, with `insecure`).
    pub fn new(signing: Signing, trust: Trust, insecure: bool, timeout: Duration) -> Sender {
        let tls = if insecure {
            rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new()))
                .with_no_client_auth()
        } else {
            crate::tls::client_config(std::slice::from_ref(&trust.dev_ca), &[])
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Sender {
            client,
            signing,
            trust,
            timeout,
        }
    }

    /// What the callbacks sent are forgeries of, when sent to test that the server refuses
    /// them.
    pub fn forgery(&self) -> Option<Forgery> {
        match self.signing {
            Signing::Forged(forgery) => Some(forgery),
            Signing::Signed(_) | Signing::Unsigned => None,
        }
    }

    /// The headers Vobiz would send with `callback` (signature headers per [`Signing`]).
    pub fn headers(&self, callback: &Callback, body: &[u8]) -> Vec<(String, String)> {
        let mut headers = vec![("User-Agent".to_owned(), "Vobiz".to_owned())];
        // A GET carries its fields in the query, and no body to give a type.
        if !callback.method.eq_ignore_ascii_case("GET") {
            headers.push((
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ));
        }
        headers.extend([
            ("Accept".to_owned(), "*/*".to_owned()),
            ("Accept-Encoding".to_owned(), "gzip".to_owned()),
        ]);
        let sign = |keys: &SigningKeys| {
            signed_headers(&callback.method, &callback.sign_url, body, keys, Form::Docs)
        };
        match &self.signing {
            Signing::Unsigned | Signing::Forged(Forgery::Unsigned) => {}
            Signing::Signed(keys) => headers.extend(sign(keys)),
            Signing::Forged(Forgery::BadSignature) => {
                // Signed with a token nobody has: right shape, fresh nonces, never valid.
                let wrong = SigningKeys {
                    auth_token: AuthToken::new("vobiz-tunnel-bad-signature"),
                    main_auth_token: Some(AuthToken::new("vobiz-tunnel-bad-main-signature")),
                };
                headers.extend(sign(&wrong));
            }
        }
        headers
    }

    /// Sends `callback` (a form body for POST, the query string for GET) and reads the answer.
    pub async fn send(&self, callback: &Callback) -> Result<Answer, String> {
        let encoded = serde_urlencoded::to_string(&callback.fields).map_err(|e| e.to_string())?;
        let is_get = callback.method.eq_ignore_ascii_case("GET");
        let (url, body) = if is_get {
            let sep = if callback.url.contains('?') { '&' } else { '?' };
            let url = if encoded.is_empty() {
                callback.url.clone()
            } else {
                format!("{}{sep}{encoded}", callback.url)
            };
            (url, Bytes::new())
        } else {
            (callback.url.clone(), Bytes::from(encoded))
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url} is not a URL: {e}"))?;
        let method = hyper::Method::from_bytes(callback.method.to_ascii_uppercase().as_bytes())
            .map_err(|e| format!("method {}: {e}", callback.method))?;
        let headers = self.headers(callback, &body);
        // Written as Vobiz spells them (`X-Vobiz-Signature-MA-V3`), not in hyper's lower case.
        let spelled: Vec<String> = headers.iter().map(|(name, _)| name.clone()).collect();
        let case = crate::forward::header_case::extensions_for_names(&spelled).await;
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let mut request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        *request.extensions_mut() = case;
        let started = Instant::now();
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| super::no_answer::explain(&url, &e, &self.trust))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer from {url}: {}", error_chain(e.as_ref())))?
                .to_bytes();
            let header = |name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some(value.to_owned())
            };
            let content_encoding = header(hyper::header::CONTENT_ENCODING);
            // As Vobiz reads it: gzip undone; a coding it did not ask for is left for the
            // judgement to name.
            let (body, content_encoding) =
                match decoded(content_encoding.as_deref(), &body, MAX_ANSWER) {
                    Ok(plain) => (String::from_utf8_lossy(&plain).into_owned(), None),
                    Err(_) => (
                        String::from_utf8_lossy(&body).into_owned(),
                        content_encoding,
                    ),
                };
            Ok(Answer {
                status: parts.status.as_u16(),
                content_type: header(hyper::header::CONTENT_TYPE),
                content_encoding,
                body,
                elapsed: started.elapsed(),
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "{url} did not answer within {} s",
                self.timeout.as_secs_f64()
            )),
        }
    }
}

/// What Vobiz would make of an answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judgement {
    /// Why the answer fails the callback; `None` when Vobiz would accept it.
    pub failure: Option<String>,
    /// What the listener's checks find in it, errors (the failure) and warnings alike: the
    /// same findings, in the same words, as the inspector shows for this answer.
    pub findings: Vec<Finding>,
}

/// Judges an answer as Vobiz would. `slow_after`: answers slower than this fail (Vobiz waits
/// about 3 s). An answer that must be XML (`expects_xml`) is linted by the listener's own
/// rules ([`lint_answer`]), so that `trigger` and the inspector never disagree about it.
pub fn judge(answer: &Answer, expects_xml: bool, slow_after: Duration) -> Judgement {
    if !(200..300).contains(&answer.status) {
        return Judgement {
            failure: Some(format!(
                "HTTP {}: Vobiz treats the callback as failed",
                answer.status
            )),
            findings: Vec::new(),
        };
    }
    if answer.elapsed > slow_after {
        return Judgement {
            failure: Some(format!(
                "answered in {} ms, slower than {} ms: Vobiz gives up",
                answer.elapsed.as_millis(),
                slow_after.as_millis()
            )),
            findings: Vec::new(),
        };
    }
    if !expects_xml {
        let findings = status_answer_finding("the status callback", Some(answer.status));
        return Judgement {
            failure: None,
            findings: findings.into_iter().collect(),
        };
    }
    let findings = lint_answer(
        answer.status,
        answer.content_type.as_deref(),
        answer.content_encoding.as_deref(),
        answer.body.as_bytes(),
    );
    let errors: Vec<String> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| format!("{}: {}", f.rule, f.message))
        .collect();
    let failure = match errors.is_empty() {
        false => Some(errors.join("; ")),
        // What the lint lets through the simulated call must still be able to follow.
        true => super::call_xml::parse(&answer.body)
            .err()
            .map(|e| format!("invalid Vobiz XML: {e}")),
    };
    Judgement { failure, findings }
}

/// Whether the server refused a forged callback, which is what a forgery test wants: 401 or
/// 403 (or 400, which some frameworks answer for a failed check). A 404 or 405 says the URL
/// or method is wrong, not that the signature was checked: a typo must not pass the test.
pub fn refused(answer: &Answer) -> bool {
    matches!(answer.status, 400 | 401 | 403)
}

/// Why the answer to a forged callback fails the test that the server refuses it; `None`
/// when it was refused ([`refused`]).
pub fn judge_refusal(answer: &Answer, forgery: Forgery) -> Option<String> {
    let sent = forgery.described();
    match answer.status {
        _ if refused(answer) => None,
        200..=299 => Some(format!(
            "HTTP {}: your server accepted {sent}; it must refuse it (401 or 403), or anyone \
             can forge callbacks to it",
            answer.status
        )),
        status @ (404 | 405) => Some(format!(
            "HTTP {status}: the URL or method looks wrong (not found / not allowed), so this \
             says nothing about the signature check; point --to at your callback's URL"
        )),
        status => Some(format!(
            "HTTP {status}: your server did not refuse {sent}, it failed; answer it 401 or 403"
        )),
    }
}

/// A certificate verifier that accepts every certificate and signature. Only `--insecure`
/// installs it: it makes TLS encrypt without authenticating the server.
#[derive(Debug)]
pub struct AcceptAnyCertificate {
    schemes: Vec<SignatureScheme>,
}

impl AcceptAnyCertificate {
    /// The verifier, advertising the schemes the crypto provider supports.
    pub fn new() -> Self {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        Self {
            schemes: provider
                .signature_verification_algorithms
                .supported_schemes(),
        }
    }
}

impl Default for AcceptAnyCertificate {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, ms: u64) -> Answer {
        Answer {
            status,
            content_type: Some("application/xml; charset=utf-8".into()),
            content_encoding: None,
            body: body.into(),
            elapsed: Duration::from_millis(ms),
        }
    }

    const SLOW: Duration = Duration::from_millis(3000);

    fn failure(answer: &Answer, expects_xml: bool) -> Option<String> {
        judge(answer, expects_xml, SLOW).failure
    }

    #[test]
    fn judging_answers() {
        assert_eq!(
            judge(&answer(200, "<Response/>", 5), true, SLOW),
            Judgement::default()
        );
        assert!(failure(&answer(500, "", 5), false).unwrap().contains("500"));
        assert!(failure(&answer(200, "", 3500), false)
            .unwrap()
            .contains("slower"));
        assert!(failure(&answer(200, "<Response>", 5), true)
            .unwrap()
            .contains("xml-well-formed: not well-formed XML"));
        assert_eq!(
            judge(&answer(200, "ok", 5), false, SLOW),
            Judgement::default()
        );
    }

    #[test]
    fn xml_answers_need_an_xml_content_type_and_at_most_100_kb() {
        let typed = |content_type: Option<&str>| Answer {
            content_type: content_type.map(String::from),
            ..answer(200, "<Response/>", 5)
        };
        assert_eq!(failure(&typed(Some("text/xml")), true), None);
        let html = failure(&typed(Some("text/html; charset=utf-8")), true).unwrap();
        assert!(html.contains("Content-Type text/html"), "{html}");
        let none = failure(&typed(None), true).unwrap();
        assert!(none.contains("no Content-Type"), "{none}");
        // A status callback's answer is not read as XML: any type will do.
        assert_eq!(failure(&typed(Some("text/html")), false), None);
        let big = format!("<Response>{}</Response>", " ".repeat(100 * 1024));
        let too_big = failure(&answer(200, &big, 5), true).unwrap();
        assert!(too_big.contains("over Vobiz's limit"), "{too_big}");
    }

    /// `trigger` judges an answer by the listener's lint: what the inspector calls an error
    /// fails, what it warns about is said, in the same words.
    #[test]
    fn trigger_and_the_listener_agree_about_an_answer() {
        use crate::checks::xml::lint_answer;
        let cases = [
            r#"<Response><Record action="ftp://x/y"/></Response>"#,
            r#"<Response><GetDigits action="/g"/></Response>"#,
            r#"<Response><Gather action="/g" timeout="5"/></Response>"#,
            "<Response/><Response/>",
            "<Response><Speak>fine</Speak></Response>",
        ];
        for body in cases {
            let sent = answer(200, body, 5);
            let judged = judge(&sent, true, SLOW);
            let linted = lint_answer(200, sent.content_type.as_deref(), None, body.as_bytes());
            assert_eq!(judged.findings, linted, "{body}");
            let errors = linted.iter().any(|f| f.severity == Severity::Error);
            assert_eq!(judged.failure.is_some(), errors, "{body}: {judged:?}");
            for error in linted.iter().filter(|f| f.severity == Severity::Error) {
                assert!(judged.failure.as_ref().unwrap().contains(&error.message));
            }
        }
        // A status callback answered 204: fine for now, but worth a word.
        let no_content = judge(&answer(204, "", 5), false, SLOW);
        assert_eq!(no_content.failure, None);
        assert!(no_content.findings[0]
            .message
            .contains("not the 200 Vobiz documents"));
    }

    #[test]
    fn bad_and_unsigned_headers() {
        let cb = Callback {
            method: "POST".into(),
            url: "http://x/cb".into(),
            sign_url: "http://x/cb".into(),
            fields: vec![],
        };
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let trust = || Trust::new("certs/dev-ca.pem".into());
        let unsigned = Sender::new(Signing::Unsigned, trust(), false, Duration::from_secs(1));
        assert_eq!(unsigned.headers(&cb, b"").len(), 4);
        let get = Callback {
            method: "GET".into(),
            ..cb.clone()
        };
        let names: Vec<String> = unsigned
            .headers(&get, b"")
            .into_iter()
            .map(|h| h.0)
            .collect();
        assert_eq!(names, ["User-Agent", "Accept", "Accept-Encoding"]);
        let forged = |forgery| {
            Sender::new(
                Signing::Forged(forgery),
                trust(),
                true,
                Duration::from_secs(1),
            )
        };
        assert_eq!(forged(Forgery::Unsigned).headers(&cb, b"").len(), 4);
        assert_eq!(forged(Forgery::BadSignature).headers(&cb, b"").len(), 4 + 7);
        assert_eq!(unsigned.forgery(), None);
    }

    #[test]
    fn a_forgery_passes_when_refused_and_fails_when_accepted() {
        for forgery in [Forgery::Unsigned, Forgery::BadSignature] {
            for refusal in [401, 403, 400] {
                assert_eq!(judge_refusal(&answer(refusal, "", 5), forgery), None);
            }
            let accepted = judge_refusal(&answer(200, "<Response/>", 5), forgery).unwrap();
            assert!(
                accepted.contains("your server accepted a callback")
                    && accepted.contains("it must refuse it"),
                "{accepted}"
            );
            let failed = judge_refusal(&answer(500, "", 5), forgery).unwrap();
            assert!(failed.contains("did not refuse"), "{failed}");
        }
    }
}
