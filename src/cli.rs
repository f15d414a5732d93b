//! Command-line definitions (clap). Every flag documents itself in `--help`; values that hold
//! secrets never show their environment value there.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Receive Vobiz callbacks over HTTPS, check their signatures and say why one fails, record
/// every exchange, and forward each byte-for-byte to your local server.
#[derive(Debug, Parser)]
#[command(name = "vobiz-tunnel", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Without a subcommand, vobiz-tunnel listens (same as `vobiz-tunnel listen`).
    #[command(flatten)]
    pub listen: ListenArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive callbacks over HTTPS, verify, record and forward them (the default).
    Listen(ListenArgs),
    /// List recorded exchanges, oldest first.
    List(ListArgs),
    /// Show one recorded exchange in full: headers, form fields, body, response, timings,
    /// and the signature explanation.
    Show(ShowArgs),
    /// Check a callback's signature offline and explain the result (exit 0 when valid, 1 when not).
    Verify(VerifyArgs),
    /// Send recorded exchanges again to the local server (as-is, re-signed, or elsewhere).
    Replay(ReplayArgs),
    /// Write recorded exchanges to a HAR 1.2 file (browser dev tools, Insomnia) or NDJSON.
    Export(ExportArgs),
    /// Read exchanges from a HAR file into the store (they can then be replayed).
    Import(ImportArgs),
    /// Run the public relay that carries callbacks to laptops connected with `listen --relay`.
    Relay(RelayArgs),
    /// Send a synthetic, signed Vobiz callback (or simulate a whole call) to a URL.
    Trigger(TriggerArgs),
}

/// The auth tokens signatures are checked (and made) with.
#[derive(Debug, Clone, Args, Default)]
pub struct TokenArgs {
    /// Vobiz auth token that signs the V2/V3 headers. Repeat (or separate with commas in the
    /// environment variable) to accept several during a token rotation. Prefer the environment
    /// variable: command lines are visible to other users of the machine.
    #[arg(
        long = "auth-token",
        value_name = "TOKEN",
        env = "VOBIZ_AUTH_TOKEN",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub auth_tokens: Vec<String>,

    /// Parent (main) account auth token, for the -MA-V2/-MA-V3 headers of sub-account callbacks.
    /// Repeat (or separate with commas in the environment variable) to accept several.
    #[arg(
        long = "main-auth-token",
        value_name = "TOKEN",
        env = "VOBIZ_MAIN_AUTH_TOKEN",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub main_auth_tokens: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// One readable line per exchange.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum HostHeader {
    /// Forward the Host header Vobiz sent (apps rebuild the signed URL from it).
    #[default]
    Keep,
    /// Send the local server's host instead.
    Rewrite,
}

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Address to listen on for HTTPS. Port 0 picks a free port (the real address is printed).
    #[arg(
        long,
        value_name = "ADDR",
        env = "VOBIZ_TUNNEL_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,

    /// Your local server. A path prefix is kept (http://localhost:3000/api + /cb -> /api/cb).
    #[arg(
        long,
        value_name = "URL",
        env = "VOBIZ_TUNNEL_FORWARD",
        default_value = "http://localhost:3000"
    )]
    pub forward: String,

    /// Also trust this CA (PEM) for an https --forward, e.g. mkcert's rootCA.pem or a
    /// self-signed certificate. Repeat for several. The public web PKI and the dev CA of
    /// --certs-dir are always trusted; the local server's certificate is always verified.
    #[arg(long, value_name = "PEM", env = "VOBIZ_TUNNEL_FORWARD_CA")]
    pub forward_ca: Vec<PathBuf>,

    /// Certificate chain (PEM, leaf first, e.g. certbot's fullchain.pem). Without --cert/--key a
    /// development certificate for localhost is generated into --certs-dir.
    #[arg(long, value_name = "PEM", requires = "key", env = "VOBIZ_TUNNEL_CERT")]
    pub cert: Option<PathBuf>,

    /// Private key for --cert (PEM).
    #[arg(long, value_name = "PEM", requires = "cert", env = "VOBIZ_TUNNEL_KEY")]
    pub key: Option<PathBuf>,

    /// Folder of the generated development certificate (trust dev-ca.pem to avoid warnings).
    #[arg(
        long,
        value_name = "DIR",
        env = "VOBIZ_TUNNEL_CERTS_DIR",
        default_value = "certs"
    )]
    pub certs_dir: PathBuf,

    #[command(flatten)]
    pub tokens: TokenArgs,

    /// The scheme://host[:port] Vobiz actually calls, when it differs from what reaches this
    /// tool (a proxy or load balancer in front), with a path prefix if the proxy strips one
    /// (https://hooks.example.com/app + /cb -> https://hooks.example.com/app/cb). Default:
    /// https:// + the request's Host header.
    #[arg(long, value_name = "URL", env = "VOBIZ_TUNNEL_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The SQLite file exchanges are recorded in
    /// [default: <data dir>/vobiz-tunnel/exchanges.db]
    #[arg(long, value_name = "PATH", env = "VOBIZ_TUNNEL_STORE")]
    pub store: Option<PathBuf>,

    /// Forward only callbacks whose signature a configured token verified; answer 403 (with
    /// the reason) to the rest: unsigned, invalid, or signed only with a kind of token that is
    /// not configured (-MA- headers without a main token). They are still recorded. Needs a
    /// token.
    #[arg(long, env = "VOBIZ_TUNNEL_REJECT_INVALID", value_parser = BoolishValueParser::new())]
    pub reject_invalid: bool,

    /// Answer 403 (recorded, not forwarded) to a callback whose nonce and signature came
    /// before, in any of its signature headers: a captured callback sent again. Without it,
    /// such a callback is forwarded and flagged nonce_reused. A Vobiz retry that kept its
    /// nonce would be refused too. Needs a token.
    #[arg(long, env = "VOBIZ_TUNNEL_REJECT_REPLAYS", value_parser = BoolishValueParser::new())]
    pub reject_replays: bool,

    /// Seconds to wait for the local server (long enough to step through a handler in a
    /// debugger). Answers slower than 3 s are flagged: Vobiz gives up after about 3 s.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30.0,
        env = "VOBIZ_TUNNEL_FORWARD_TIMEOUT"
    )]
    pub forward_timeout: f64,

    /// Largest request body accepted, in bytes; larger requests get 413 and are recorded.
    #[arg(long, value_name = "BYTES", default_value_t = 10 * 1024 * 1024, env = "VOBIZ_TUNNEL_MAX_BODY")]
    pub max_body: usize,

    /// Which Host header the local server receives.
    #[arg(long, value_enum, default_value_t = HostHeader::Keep, env = "VOBIZ_TUNNEL_HOST_HEADER")]
    pub host_header: HostHeader,

    /// Run without the terminal UI: print one line per exchange.
    #[arg(long, env = "VOBIZ_TUNNEL_NO_TUI", value_parser = BoolishValueParser::new())]
    pub no_tui: bool,

    /// Format of the headless output.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "VOBIZ_TUNNEL_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Most connections served at once; further ones wait in the kernel's backlog. The
    /// open-files limit is raised to fit; where it cannot be, the cap is lowered (with a
    /// warning).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub max_connections: usize,

    /// Seconds a client may take to complete the TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub handshake_timeout: f64,

    /// Seconds a client may take to send a request's headers; also how long a connection
    /// is kept without a request in flight (idle keep-alive, HTTP/2 without streams, or
    /// silence after the TLS handshake).
    #[arg(long, value_name = "SECS", default_value_t = 15.0)]
    pub header_timeout: f64,

    /// Seconds a client may take to send a request's body.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub body_timeout: f64,

    /// Warn (never block) when a callback comes from outside Vobiz's published source
    /// addresses. The list is shared by every Vobiz customer: hygiene, not authentication.
    #[arg(long, env = "VOBIZ_TUNNEL_VOBIZ_IPS_WARNING", value_parser = BoolishValueParser::new())]
    pub vobiz_ips_warning: bool,

    /// Receive callbacks through a relay on a public host (`vobiz-tunnel relay` there):
    /// HOST[:PORT], port 443 by default. This machine connects out; nothing needs to reach it.
    #[arg(long, value_name = "HOST[:PORT]", env = "VOBIZ_TUNNEL_RELAY")]
    pub relay: Option<String>,

    /// The token the relay expects (prefer the environment variable).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "VOBIZ_TUNNEL_RELAY_TOKEN",
        hide_env_values = true
    )]
    pub relay_token: Option<String>,

    /// Also trust this CA (PEM) for the relay's certificate, e.g. a private CA. The public
    /// web PKI is always trusted; the relay's certificate is always verified.
    #[arg(long, value_name = "PEM", env = "VOBIZ_TUNNEL_RELAY_CA")]
    pub relay_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Address to listen on for HTTPS (callbacks from Vobiz and tunnels from laptops).
    #[arg(
        long,
        value_name = "ADDR",
        env = "VOBIZ_RELAY_LISTEN",
        default_value = "0.0.0.0:443"
    )]
    pub listen: SocketAddr,

    /// The public hostname(s) Vobiz calls; certificates are obtained for them with --acme.
    #[arg(long = "domain", value_name = "NAME")]
    pub domains: Vec<String>,

    /// Certificate chain (PEM), reloaded when the file changes (certbot renewals need no restart).
    #[arg(long, value_name = "PEM", requires = "key", conflicts_with = "acme")]
    pub cert: Option<PathBuf>,

    /// Private key for --cert (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Obtain and renew certificates for --domain with ACME (RFC 8555), by TLS-ALPN-01 on the
    /// listener and, with --acme-http-listen, HTTP-01.
    #[arg(long, requires = "domains")]
    pub acme: bool,

    /// Contact e-mail for the ACME account.
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,

    /// The ACME directory (another CA, or a test CA such as Pebble).
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://acme-v02.api.letsencrypt.org/directory"
    )]
    pub acme_directory: String,

    /// Extra CA (PEM) trusted for the ACME directory's HTTPS (a test CA).
    #[arg(long, value_name = "PEM")]
    pub acme_directory_ca: Option<PathBuf>,

    /// Where the ACME account and certificates are cached
    /// [default: <data dir>/vobiz-tunnel/acme]
    #[arg(long, value_name = "DIR")]
    pub acme_cache: Option<PathBuf>,

    /// Also answer HTTP-01 challenges (and redirect other plain HTTP to https) on this address.
    #[arg(long, value_name = "ADDR")]
    pub acme_http_listen: Option<SocketAddr>,

    /// The token laptops authenticate with (prefer the environment variable). One relay, one
    /// token; for a team use --route.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "VOBIZ_TUNNEL_RELAY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// A tunnel for one laptop: HOST=TOKEN (callbacks to that hostname) or /PREFIX=TOKEN
    /// (callbacks under that path; the prefix is removed before forwarding). Repeat for each.
    #[arg(long = "route", value_name = "HOST|/PREFIX=TOKEN")]
    pub routes: Vec<String>,

    /// Seconds to hold a callback while no laptop is connected (to ride out a reconnect)
    /// before answering 503. 0 answers at once. Keep it well under Vobiz's 3 s.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub hold: f64,

    /// Answer 403 to callbacks from outside Vobiz's published source addresses.
    #[arg(long)]
    pub vobiz_ips_only: bool,

    /// With --vobiz-ips-only: these addresses or CIDR blocks instead of the published list.
    #[arg(
        long = "allow-ip",
        value_name = "ADDR[/BITS]",
        requires = "vobiz_ips_only"
    )]
    pub allow_ips: Vec<String>,

    /// Seconds a laptop has to authenticate after connecting.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub auth_timeout: f64,

    /// Seconds to wait for the laptop's answer to a callback.
    #[arg(long, value_name = "SECS", default_value_t = 35.0)]
    pub forward_timeout: f64,

    /// Largest callback body carried, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body: usize,

    /// Most connections served at once.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections: usize,

    /// Format of the relay's log lines (one per callback; no bodies, no secrets).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArg {
    /// The SQLite file to read [default: <data dir>/vobiz-tunnel/exchanges.db]
    #[arg(long, value_name = "PATH", env = "VOBIZ_TUNNEL_STORE")]
    pub store: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Only exchanges matching this filter expression (see README: event:Hangup status:5xx ...).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Print one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// How many of the newest exchanges to list.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = at_least_one)]
    pub limit: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The exchange's id (as in `list`).
    pub id: i64,
    #[command(flatten)]
    pub store: StoreArg,
    /// Print the exchange as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The URL Vobiz called, as configured at Vobiz (scheme, host, port, path, query).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The callback's HTTP method.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// A request header, `Name: value`. Repeat for each header (the X-Vobiz-Signature-* ones
    /// and their nonces matter).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The request body, or @FILE to read it from a file.
    #[arg(long, value_name = "STRING|@FILE")]
    pub body: Option<String>,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["id", "filter"])))]
pub struct ReplayArgs {
    /// The exchange to replay.
    pub id: Option<i64>,
    /// Replay every exchange matching this filter, oldest first.
    #[arg(long, value_name = "EXPR", conflicts_with = "id")]
    pub filter: Option<String>,
    /// Compute fresh nonces and signatures with the configured tokens (passes the app's
    /// signature check); without it the request is sent byte-exact, same nonce.
    #[arg(long)]
    pub resign: bool,
    /// Send to this base URL instead of the local server (the path and query are kept).
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// The local server (as for `listen`).
    #[arg(
        long,
        value_name = "URL",
        env = "VOBIZ_TUNNEL_FORWARD",
        default_value = "http://localhost:3000"
    )]
    pub forward: String,
    /// The public URL re-signed requests are signed for [default: the original's public URL]
    #[arg(long, value_name = "URL", env = "VOBIZ_TUNNEL_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub store: StoreArg,
    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Also trust this CA (PEM) for an https --forward or --to (as for `listen`).
    #[arg(long, value_name = "PEM", env = "VOBIZ_TUNNEL_FORWARD_CA")]
    pub forward_ca: Vec<PathBuf>,
    /// Folder of the development certificate (its CA is trusted for https targets).
    #[arg(
        long,
        value_name = "DIR",
        env = "VOBIZ_TUNNEL_CERTS_DIR",
        default_value = "certs"
    )]
    pub certs_dir: PathBuf,
    /// Print one JSON object per replayed exchange.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("format").required(true).args(["har", "ndjson"])))]
pub struct ExportArgs {
    /// Write HAR 1.2 to FILE (- for standard output).
    #[arg(long, value_name = "FILE")]
    pub har: Option<PathBuf>,
    /// Write one JSON object per exchange to FILE (- for standard output).
    #[arg(long, value_name = "FILE")]
    pub ndjson: Option<PathBuf>,
    /// Only exchanges matching this filter expression.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The HAR file to read.
    #[arg(long, value_name = "FILE")]
    pub har: PathBuf,
    /// Import every entry, even one the store already holds (the same request received at
    /// the same moment), as a new exchange. Without it, those are skipped and named.
    #[arg(long)]
    pub again: bool,
    #[command(flatten)]
    pub store: StoreArg,
}

/// `trigger`: one synthetic callback of a given kind, or a simulated call.
#[derive(Debug, Clone, Args)]
pub struct TriggerArgs {
    #[command(subcommand)]
    pub kind: TriggerKind,
}

/// The callback kinds of the catalogue (spec §4), plus `call`.
#[derive(Debug, Clone, Subcommand)]
pub enum TriggerKind {
    /// answer_url: `Event=StartApp` (expects Vobiz XML).
    Answer(TriggerOneArgs),
    /// ring_url: `Event=Ring`.
    Ring(TriggerOneArgs),
    /// hangup_url: `Event=Hangup` with duration, cost and cause.
    Hangup(TriggerOneArgs),
    /// machine_detection_url: `Event=MachineDetection`.
    MachineDetection(TriggerOneArgs),
    /// `<Gather action>`: the caller's digits (expects Vobiz XML).
    Gather(TriggerOneArgs),
    /// `<Gather interimSpeechResultsCallback>`: partial speech results.
    GatherInterim(TriggerOneArgs),
    /// `<Dial callbackUrl>`: `Event=DialHangup` with the B leg's outcome.
    DialStatus(TriggerOneArgs),
    /// `<Dial action>`: `Event=DialAction` (expects Vobiz XML).
    DialAction(TriggerOneArgs),
    /// `<Record action>`: `Event=Record` (expects Vobiz XML).
    Record(TriggerOneArgs),
    /// `<Record callbackUrl>`: `Event=RecordStop` with the recording's URL and length.
    RecordCallback(TriggerOneArgs),
    /// `<Record transcriptionUrl>`: the transcription.
    Transcription(TriggerOneArgs),
    /// Record API callback_url: snake_case `record_url`, `recording_id`, durations.
    RecordApi(TriggerOneArgs),
    /// `<Conference callbackUrl>`: `Event=ConferenceEnter`.
    Conference(TriggerOneArgs),
    /// `<Conference waitSound>` (also dialMusic, confirmSound): `Event=ConferenceRemoteSounds`
    /// (expects Vobiz XML of Play/Speak/Wait).
    ConferenceSounds(TriggerOneArgs),
    /// `<Stream statusCallbackUrl>`: `Event=StartStream`.
    StreamStatus(TriggerOneArgs),
    /// `<Redirect>` target: `Event=Redirect` (expects Vobiz XML).
    Redirect(TriggerOneArgs),
    /// Transfer API aleg_url/bleg_url: `Event=Transfer` (expects Vobiz XML).
    Transfer(TriggerOneArgs),
    /// Simulate a whole call: Ring, StartApp, then follow the XML your server answers.
    Call(TriggerCallArgs),
}

/// The tokens `trigger` signs with. `listen` accepts any of several during a token rotation;
/// a sender signs with one, as Vobiz does, so only the first of each counts.
#[derive(Debug, Clone, Args, Default)]
pub struct SigningTokenArgs {
    /// Vobiz auth token to sign the V2/V3 headers with. When several are given (repeated, or
    /// separated with commas in the environment variable, as `listen` takes them during a
    /// token rotation), trigger signs with the first only, as Vobiz signs with one. Prefer the
    /// environment variable: command lines are visible to other users of the machine.
    #[arg(
        long = "auth-token",
        value_name = "TOKEN",
        env = "VOBIZ_AUTH_TOKEN",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub auth_tokens: Vec<String>,

    /// Parent (main) account auth token to sign the -MA-V2/-MA-V3 headers of sub-account
    /// callbacks with; the first only when several are given.
    #[arg(
        long = "main-auth-token",
        value_name = "TOKEN",
        env = "VOBIZ_MAIN_AUTH_TOKEN",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub main_auth_tokens: Vec<String>,
}

impl From<&SigningTokenArgs> for TokenArgs {
    fn from(signing: &SigningTokenArgs) -> TokenArgs {
        TokenArgs {
            auth_tokens: signing.auth_tokens.clone(),
            main_auth_tokens: signing.main_auth_tokens.clone(),
        }
    }
}

/// Options shared by every trigger.
#[derive(Debug, Clone, Args)]
pub struct TriggerCommon {
    #[command(flatten)]
    pub tokens: SigningTokenArgs,
    /// Send no signature headers, to test that your server refuses unsigned callbacks: a 4xx
    /// answer (401, 403) passes, acceptance (2xx) fails and exits 1.
    #[arg(long, conflicts_with = "bad_signature")]
    pub unsigned: bool,
    /// Send signatures that do not verify, to test that your server refuses them: a 4xx
    /// answer (401, 403) passes, acceptance (2xx) fails and exits 1.
    #[arg(long)]
    pub bad_signature: bool,
    /// Folder where `listen` wrote its development certificate; its CA (dev-ca.pem) is
    /// trusted for https. A folder given that holds no dev CA is warned about [default: certs]
    #[arg(long, value_name = "DIR", env = "VOBIZ_TUNNEL_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Accept any certificate from https targets (self-signed, expired, wrong name).
    #[arg(long)]
    pub insecure: bool,
    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECS", default_value_t = 15.0)]
    pub timeout: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Answers slower than this fail (Vobiz gives up after about 3 s). For tests.
    #[arg(long, value_name = "MS", default_value_t = 3000, hide = true)]
    pub slow_after_ms: u64,
}

/// `trigger <kind>`: one callback.
#[derive(Debug, Clone, Args)]
pub struct TriggerOneArgs {
    /// The URL to send the callback to.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The URL to sign, when it differs from --to (the public URL configured at Vobiz). A bare
    /// origin (https://hooks.example.com) takes the path and query of --to, as
    /// `listen --public-url` does.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Override or add a form field: K=V. Repeat for each.
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// HTTP method: POST sends a form body, GET puts the fields in the query string.
    #[arg(long, default_value = "POST", value_parser = ["POST", "GET"], ignore_case = true)]
    pub method: String,
    #[command(flatten)]
    pub common: TriggerCommon,
}

/// `trigger call`: a simulated call driven by your answer XML.
#[derive(Debug, Clone, Args)]
pub struct TriggerCallArgs {
    /// The answer URL (receives StartApp).
    #[arg(long, value_name = "URL")]
    pub answer_url: String,
    /// Method for the answer URL.
    #[arg(long, default_value = "POST", value_parser = ["POST", "GET"], ignore_case = true)]
    pub answer_method: String,
    /// The hangup URL [default: the answer URL].
    #[arg(long, value_name = "URL")]
    pub hangup_url: Option<String>,
    /// The ring URL (receives Ring before StartApp).
    #[arg(long, value_name = "URL")]
    pub ring_url: Option<String>,
    /// Digits the caller presses at each <Gather>, in turn (repeat for several Gathers).
    #[arg(long, value_name = "DIGITS")]
    pub digits: Vec<String>,
    /// What the caller says at each <Gather> that accepts speech, in turn.
    #[arg(long, value_name = "TEXT")]
    pub speech: Vec<String>,
    /// The caller's number, E.164 (sent without its +, as Vobiz sends it).
    #[arg(long, value_name = "NUMBER", default_value = "919876543210", value_parser = e164)]
    pub from: String,
    /// The called number.
    #[arg(long, value_name = "NUMBER", default_value = "918045678901", value_parser = e164)]
    pub to_number: String,
    /// inbound or outbound [default: outbound with --ring-url (a ring URL exists only on
    /// calls placed with the Make Call API), inbound otherwise].
    #[arg(long, value_parser = ["inbound", "outbound"])]
    pub direction: Option<String>,
    /// The URL Vobiz calls, when a tunnel or proxy stands in front of the answer URL
    /// (https://hooks.example.com, or with a path prefix the proxy strips): requests to the
    /// answer URL's origin are signed for it, as Vobiz signs what it calls, and URLs of the
    /// XML under it are sent to the answer URL's origin.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Most requests one call may make (stops XML that loops).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_requests: usize,
    #[command(flatten)]
    pub common: TriggerCommon,
}

impl TriggerCallArgs {
    /// `--direction`, or what the other options imply.
    pub fn direction(&self) -> &str {
        match (&self.direction, &self.ring_url) {
            (Some(direction), _) => direction,
            (None, Some(_)) => "outbound",
            (None, None) => "inbound",
        }
    }
}

/// A phone number as Vobiz sends one: digits, without a `+` (given, it is dropped); E.164
/// (919876543210), or a national form for the called number (Vobiz has sent `To=080…`).
fn e164(text: &str) -> Result<String, String> {
    let digits = text.trim().strip_prefix('+').unwrap_or(text.trim());
    let valid = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    match valid {
        true => Ok(digits.to_owned()),
        false => Err(format!(
            "{text:?} is not a phone number: 8 to 15 digits, a country code first \
             (919876543210)"
        )),
    }
}

/// A count of one or more.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("give 1 or more".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}
