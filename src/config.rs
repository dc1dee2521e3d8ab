//! Configuration, read once at startup from the environment (`.env` is loaded by
//! the binaries, never by the library). A missing or invalid value stops the
//! process with one line naming the variable.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use validator::{ValidateRange, ValidateUrl};

/// SNS's largest message (256 KiB), envelope and attributes included.
pub const SNS_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Graph API version used when `WHATSAPP_API_VERSION` is unset (supported until 2028-07).
pub const DEFAULT_WHATSAPP_API_VERSION: &str = "v25.0";

pub use crate::secret::Secret;
use crate::tenants::{Tenants, file as tenants_file};

/// One API key a client may present. Its `id` appears in logs; the key never does.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Short name used in logs and in the envelope's `apiKeyId`.
    pub id: String,
    /// The key the client sends in `x-api-key` or `Authorization: Bearer`.
    pub key: Secret,
}

/// Why the configuration could not be loaded. Displayed as one line that names
/// the variable and says what to set.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{var} is not set: {hint}")]
    Missing {
        var: &'static str,
        hint: &'static str,
    },
    /// A variable is set to a value that cannot be used.
    #[error("{var} is invalid: {reason}")]
    Invalid { var: String, reason: String },
}

/// Where log lines go and how they look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `EnvFilter` directives (`RUST_LOG`, else `LOG_LEVEL`); default `info`.
    pub filter: String,
    /// One JSON object per line (default), or human-readable `pretty` output.
    pub format: LogFormat,
}

/// The log line format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines (default).
    Json,
    /// Coloured multi-line output for people at a terminal.
    Pretty,
    /// One plain-text line per event, no colours: Lambda's `Text` log format.
    Text,
}

/// The WhatsApp Cloud API account that messages are sent from.
#[derive(Debug, Clone)]
pub struct WhatsAppConfig {
    /// `WHATSAPP_ACCESS_TOKEN`: a system-user token with `whatsapp_business_messaging`.
    pub access_token: Secret,
    /// `WHATSAPP_PHONE_NUMBER_ID`: the sending number's id (not the number itself).
    pub phone_number_id: String,
    /// `WHATSAPP_API_VERSION`: Graph API version, default [`DEFAULT_WHATSAPP_API_VERSION`].
    pub api_version: String,
    /// `WHATSAPP_API_BASE_URL`: default `https://graph.facebook.com`; tests point it at a fake.
    pub base_url: String,
    /// `WHATSAPP_TIMEOUT_MS`: limit for one API call, default 10 000 ms.
    pub request_timeout: Duration,
    /// `WHATSAPP_MAX_MPS`: messages per second for this sending number, default 80.
    pub max_mps: u32,
    /// `WHATSAPP_PAIR_RATE`: messages to one recipient per 6 s, default 1; 0 turns
    /// the limit off (a number Meta allows more, or tests).
    pub pair_rate: u32,
}

/// The Infobip account SMS are sent from.
#[derive(Debug, Clone)]
pub struct InfobipConfig {
    /// `INFOBIP_BASE_URL`: the account's own base URL (`https://xxxxx.api.infobip.com`).
    pub base_url: String,
    /// `INFOBIP_API_KEY`: sent as `Authorization: App <key>`.
    pub api_key: Secret,
    /// `INFOBIP_SENDER`: the sender id of SMS that name none.
    pub sender: Option<String>,
    /// `INFOBIP_TIMEOUT_MS`: limit for one API call, default 10 000 ms.
    pub request_timeout: Duration,
    /// `SMS_MAX_MPS`: client-side SMS throughput cap, default 20.
    pub max_mps: u32,
    /// `PUBLIC_BASE_URL`: where Infobip reaches `/webhooks/infobip`; without
    /// it no delivery report can come back.
    pub public_base_url: Option<String>,
}

/// How envelopes are delivered.
#[derive(Debug, Clone)]
pub enum DeliveryMode {
    /// To the providers whose credentials are set; a channel without them
    /// is not configured (its messages are refused at the edge).
    Providers {
        /// WhatsApp's numbers: the deployment's when `WHATSAPP_ACCESS_TOKEN`
        /// and `WHATSAPP_PHONE_NUMBER_ID` are set, then `TENANTS_FILE`'s.
        whatsapp: Vec<WhatsAppConfig>,
        /// SMS, when `INFOBIP_BASE_URL` and `INFOBIP_API_KEY` are set.
        infobip: Option<Box<InfobipConfig>>,
    },
    /// Print the request that would be sent, one JSON line per message, to stdout.
    Console,
}

impl DeliveryMode {
    /// True when messages of `channel` can be delivered here (the console
    /// takes every channel).
    pub fn delivers(&self, channel: crate::contract::Channel) -> bool {
        use crate::contract::Channel;
        match self {
            Self::Console => true,
            Self::Providers { whatsapp, infobip } => match channel {
                Channel::Whatsapp => !whatsapp.is_empty(),
                Channel::Sms => infobip.is_some(),
            },
        }
    }
}

/// Settings of the delivery pipeline, shared by the consumer and the embedded default.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `DELIVERY`: `whatsapp`, or `console`; defaults to `console` only without credentials.
    pub mode: DeliveryMode,
    /// True when `DELIVERY` was unset and console was chosen because no credentials exist.
    pub console_by_default: bool,
    /// `DELIVERY_MAX_ATTEMPTS`: attempts before a retryable failure is
    /// dead-lettered, counted by the embedded queue or by SQS's receive count
    /// (its redrive policy may act sooner; SNS → Lambda has no count), default 8.
    pub max_attempts: u32,
    /// `DELIVERY_CONCURRENCY`: the most deliveries in flight at once. Unset
    /// (default): as many as the rate caps and the observed provider latency
    /// need, up to the caps × 2.5 s.
    pub concurrency: Option<usize>,
    /// `CIRCUIT_COOLDOWN_MS`: how long a provider's circuit stays open before a
    /// probe, default 30 000 ms.
    pub circuit_cooldown: Duration,
    /// `DELIVERY_RETRY_BASE_MS`: delay before the second attempt, doubling per
    /// attempt, default 2 000 ms.
    pub retry_base: Duration,
    /// `DELIVERY_RETRY_MAX_MS`: longest delay between attempts, default 300 000 ms.
    pub retry_max: Duration,
    /// `WHATSAPP_WINDOW`: `on` (default) checks the customer-service window
    /// at the edge and before each free-form WhatsApp send; `off` does not.
    pub window_checks: bool,
}

/// The template sync: which accounts, how often.
#[derive(Debug, Clone, Default)]
pub struct TemplateConfig {
    /// `TEMPLATE_SYNC_SECS`: how often each account is listed, default 600 s.
    pub every: Duration,
    /// Each account, with the numbers that send from it.
    pub accounts: Vec<TemplateAccount>,
    /// `WHATSAPP_API_BASE_URL`, as for sends.
    pub base_url: String,
    /// `WHATSAPP_API_VERSION`, as for sends.
    pub api_version: String,
    /// `WHATSAPP_TIMEOUT_MS`: limit for one page.
    pub timeout: Duration,
}

/// A WhatsApp Business Account: `WHATSAPP_BUSINESS_ACCOUNT_ID` for the
/// deployment's number, `waba_id` for a number in `TENANTS_FILE`.
#[derive(Debug, Clone)]
pub struct TemplateAccount {
    /// The account's id.
    pub waba_id: String,
    /// Its numbers' `phone_number_id`s: sends from them are checked.
    pub number_ids: Vec<String>,
    /// The token templates are listed with (the first number's).
    pub token: Secret,
}

/// Everything `herald-gateway` needs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `HOST`, default `0.0.0.0`.
    pub host: IpAddr,
    /// `PORT`, default 3000; 0 picks a free port.
    pub port: u16,
    /// `API_KEYS` (`id:key,…`) or `API_KEY` (one key, id `default`); required.
    pub api_keys: Vec<ApiKey>,
    /// `SNS_TOPIC_ARN`: publish here; unset selects the embedded queue.
    pub sns_topic_arn: Option<String>,
    /// `HERALD_DATA_DIR`: where the embedded queue lives, default `./data`.
    pub data_dir: PathBuf,
    /// `EMBEDDED_MAX_DB_MB`: largest size of the embedded queue's database in MiB;
    /// past it sends get 503. 0 (default) means only the disk limits it.
    pub embedded_max_db_mb: u64,
    /// `MAX_BODY_BYTES`: largest request body, default 65 536 bytes.
    pub max_body_bytes: usize,
    /// `REQUEST_TIMEOUT_MS`: limit for one request, including publishing, default 10 000 ms.
    pub request_timeout: Duration,
    /// `HEADER_READ_TIMEOUT_MS`: longest a client may take to send a request
    /// head, and longest a keep-alive connection may sit idle; default 10 000 ms.
    pub header_read_timeout: Duration,
    /// `MAX_CONNECTIONS`: most client connections open at once, default 4 096.
    pub max_connections: usize,
    /// `SHUTDOWN_TIMEOUT_MS`: on SIGTERM, longest to wait for requests and
    /// deliveries in flight before exiting, default 15 000 ms.
    pub shutdown_timeout: Duration,
    /// `IDEMPOTENCY_TTL_SECS`: how long an `Idempotency-Key` is remembered,
    /// 1 s to 30 days, default 86 400 s.
    pub idempotency_ttl: Duration,
    /// `IDEMPOTENCY_MAX_KEYS`: most keys remembered per API key id (oldest settled
    /// one forgotten first; keys in flight never), 1 to 10 000 000, default 100 000.
    pub idempotency_max_keys: usize,
    /// `RATE_LIMIT_PER_KEY`: requests per second allowed per API key (burst of the same size); 0 turns it off, default 0.
    pub rate_limit_per_key: u32,
    /// `SNS_BATCH_LINGER_MS`: how long a publish waits for others to share a `PublishBatch`, default 1 ms; 0 sends at once.
    pub sns_batch_linger: Duration,
    /// `SNS_CLIENT`: `sdk` (aws-sdk-sns, default) or `lean` (Herald's own signed
    /// `PublishBatch` call; faster, see the README's Performance section).
    pub sns_lean_client: bool,
    /// `METRICS`: `on` (default) serves `GET /metrics`; `off` removes it.
    pub metrics: bool,
    /// `SMS_MAX_SEGMENTS`: the longest SMS accepted, 1 to 100 segments, default 10.
    pub sms_max_segments: usize,
    /// `SCHEDULE_MAX_DAYS`: the furthest `sendAt`, 1 to 365 days, default 35.
    pub schedule_max_days: u32,
    /// `MEDIA_MAX_BYTES`: the largest upload, below WhatsApp's own limits,
    /// default 104 857 600 (100 MB, WhatsApp's largest).
    pub media_max_bytes: u64,
    /// `MEDIA_BUCKET`: the S3 bucket media is kept in with SNS (without it,
    /// media is refused there; the embedded default keeps it on disk).
    pub media_bucket: Option<String>,
    /// `BATCH_MAX_MESSAGES`: most entries in one batch, 1 to 10 000, default 1 000.
    pub batch_max_messages: usize,
    /// `BATCH_MAX_BODY_BYTES`: largest batch body, default 4 MiB.
    pub batch_max_body_bytes: usize,
    /// `ADMIN_KEY_IDS`: comma-separated API key ids that may list every
    /// tenant's dead letters; default none (each key sees its own).
    pub admin_key_ids: Vec<String>,
    /// `TENANTS_FILE`: the tenants, their keys, numbers, senders and shares
    /// (one tenant, `default`, without it).
    pub tenants: Arc<Tenants>,
    /// Delivery settings for the embedded default.
    pub delivery: DeliveryConfig,
    /// Statuses and events.
    pub status: StatusConfig,
    /// AWS SDK call limits.
    pub aws_timeouts: AwsTimeouts,
    /// The providers' webhooks.
    pub webhooks: WebhookConfig,
    /// The WhatsApp Business Accounts whose templates are synced and checked.
    pub templates: TemplateConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Limits on one AWS SDK call (SNS publishing, the DynamoDB status store), for
/// the gateway and the consumer: short enough that a stuck call becomes a 503 or
/// a retried write, not a hung request; raised where the AWS endpoint is slow
/// (an emulator on a small machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// `AWS_ATTEMPT_TIMEOUT_MS`: one attempt, default 3 000 ms.
    pub attempt: Duration,
    /// `AWS_OPERATION_TIMEOUT_MS`: all attempts of one call, default 8 000 ms;
    /// at least the attempt timeout.
    pub operation: Duration,
}

/// Where statuses are kept and where events go, for the gateway and the consumer.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// `STATUS_TABLE`: the DynamoDB table (SNS mode). The embedded default
    /// keeps statuses in its own database and ignores it.
    pub table: Option<String>,
    /// `STATUS_TTL_DAYS`: how long statuses are kept, 1 to 3 650 days, default 30.
    pub ttl: Duration,
    /// `EVENTS_TOPIC_ARN`: publish events here (SNS mode).
    pub events_topic_arn: Option<String>,
    /// `EVENTS_WEBHOOK_URL` and `EVENTS_WEBHOOK_SECRET`: POST events here,
    /// signed (embedded default).
    pub events_webhook: Option<EventsWebhookConfig>,
}

/// Where the embedded default POSTs events, and the Standard Webhooks secret.
#[derive(Debug, Clone)]
pub struct EventsWebhookConfig {
    /// `EVENTS_WEBHOOK_URL`.
    pub url: String,
    /// `EVENTS_WEBHOOK_SECRET` (`whsec_<base64>`).
    pub secret: crate::events::signing::WebhookSecret,
}

impl EventsWebhookConfig {
    /// The URL as it may be logged: without its userinfo (a receiver's
    /// credentials) or query (often a token).
    pub fn loggable_url(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.set_query(None);
                url.to_string()
            }
            Err(_) => "[unparsable]".to_owned(),
        }
    }
}

/// Authentication of the providers' webhooks; a route whose secret is unset is `404`.
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    /// `WHATSAPP_VERIFY_TOKEN`: the subscription handshake's token.
    pub whatsapp_verify_token: Option<Secret>,
    /// `WHATSAPP_APP_SECRET`: the key of `X-Hub-Signature-256`.
    pub whatsapp_app_secret: Option<Secret>,
    /// `INFOBIP_WEBHOOK_SECRET`: key of the hex HMAC-SHA256 of Infobip's webhooks.
    pub infobip_secret: Option<Secret>,
    /// `INFOBIP_WEBHOOK_BASIC`: `user:password` Infobip's webhooks send as HTTP Basic.
    pub infobip_basic: Option<Secret>,
    /// `INFOBIP_SIGNATURE_HEADER`: the header holding the signature, default `X-Infobip-Signature`.
    pub infobip_signature_header: String,
    /// `WEBHOOK_MAX_BODY_BYTES`: largest webhook body, default 4 MiB.
    pub max_body_bytes: usize,
    /// `WEBHOOK_BODIES_MAX_BYTES`: most bytes all webhook bodies being read
    /// may hold together, at least one body's limit; default 16 MiB. Past it
    /// a webhook waits up to 2 s, then gets `503` (the provider retries).
    pub bodies_max_bytes: usize,
    /// `OPT_OUT_KEYWORDS`: inbound texts (whole, trimmed, case-folded) that
    /// opt the sender out; default `STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT`.
    pub opt_out_keywords: Vec<String>,
    /// `WHATSAPP_AUTO_READ`: `on` marks every inbound WhatsApp message read
    /// when it is recorded; default `off`.
    pub whatsapp_auto_read: bool,
}

/// The providers' credentials that may come from Secrets Manager (as
/// `<VAR>_SECRET_ID`): one per provider, beside its other settings here.
pub const SECRET_VARIABLES: [&str; 2] = ["WHATSAPP_ACCESS_TOKEN", "INFOBIP_API_KEY"];

/// The opt-out keywords when `OPT_OUT_KEYWORDS` is unset.
pub const DEFAULT_OPT_OUT_KEYWORDS: [&str; 6] =
    ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];

/// Everything `herald-consumer` needs.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `SQS_QUEUE_URL`: poll this queue when not running under Lambda.
    pub sqs_queue_url: Option<String>,
    /// `MEDIA_BUCKET`: where sends by `mediaId` find their files (SNS mode).
    pub media_bucket: Option<String>,
    /// `SNS_TOPIC_ARN`: the gateway's topic, where failover legs go when a
    /// provider's report that came before the send was recorded says the
    /// person cannot be reached (with `STATUS_TABLE`).
    pub sns_topic_arn: Option<String>,
    /// `METRICS_PORT`: the SQS poller serves `/metrics` and `/ping` on this
    /// port when set and `METRICS` is not `off`.
    pub metrics_port: Option<u16>,
    /// `HOST`: the address `/metrics` listens on, default `0.0.0.0`.
    pub metrics_host: IpAddr,
    /// `TENANTS_FILE`: the WhatsApp numbers and their tokens (key ids are
    /// the gateway's to check).
    pub tenants: Arc<Tenants>,
    /// Delivery settings.
    pub delivery: DeliveryConfig,
    /// Statuses and events.
    pub status: StatusConfig,
    /// AWS SDK call limits.
    pub aws_timeouts: AwsTimeouts,
    /// Logging.
    pub log: LogConfig,
}

/// Reads variables through a lookup function so tests need not touch the process env.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    /// The value, with surrounding whitespace removed; empty counts as unset.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| ConfigError::Invalid {
                var: name.to_owned(),
                reason: format!("{raw:?} is not a valid number"),
            }),
        }
    }

    /// A number within `[min, max]` (checked with `validator`), or `default`.
    fn ranged<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
        T: ValidateRange<T>,
    {
        let value = self.parse(name, default)?;
        if value.validate_range(Some(min), Some(max), None, None) {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                var: name.to_owned(),
                reason: format!("must be between {min} and {max}, found {value}"),
            })
        }
    }
}

impl GatewayConfig {
    /// Reads the gateway's configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the gateway's configuration through `lookup` (a test passes a map).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        let host = match vars.get("HOST") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(raw) => raw.parse().map_err(|_| ConfigError::Invalid {
                var: "HOST".into(),
                reason: format!("{raw:?} is not an IP address"),
            })?,
        };
        let max_body_bytes = vars.ranged("MAX_BODY_BYTES", 65_536, 256, 16 << 20)?;
        let request_timeout_ms = vars.ranged("REQUEST_TIMEOUT_MS", 10_000, 100, 300_000)?;
        let sns_batch_linger_ms = vars.ranged("SNS_BATCH_LINGER_MS", 1, 0, 1000)?;
        let sns_topic_arn = sns_topic_from(&vars, max_body_bytes)?;
        let api_keys = api_keys_from(&vars)?;
        let admin_key_ids = admin_key_ids_from(&vars, &api_keys)?;
        let key_ids: Vec<String> = api_keys.iter().map(|k| k.id.clone()).collect();
        let tenants = Arc::new(tenants_from(&vars, Some(&key_ids))?);
        Ok(Self {
            host,
            port: vars.parse("PORT", 3000)?,
            api_keys,
            admin_key_ids,
            sms_max_segments: vars.ranged("SMS_MAX_SEGMENTS", 10, 1, 100)?,
            schedule_max_days: vars.ranged("SCHEDULE_MAX_DAYS", 35, 1, 365)?,
            media_max_bytes: vars.ranged("MEDIA_MAX_BYTES", 100 << 20, 1, 100 << 20)?,
            media_bucket: vars.get("MEDIA_BUCKET"),
            metrics: metrics_on(&vars)?,
            batch_max_messages: vars.ranged("BATCH_MAX_MESSAGES", 1000, 1, 10_000)?,
            batch_max_body_bytes: vars.ranged("BATCH_MAX_BODY_BYTES", 4 << 20, 1024, 64 << 20)?,
            sns_topic_arn,
            data_dir: vars
                .get("HERALD_DATA_DIR")
                .map_or_else(|| PathBuf::from("./data"), PathBuf::from),
            embedded_max_db_mb: vars.parse("EMBEDDED_MAX_DB_MB", 0)?,
            max_body_bytes,
            request_timeout: Duration::from_millis(request_timeout_ms),
            header_read_timeout: Duration::from_millis(vars.ranged(
                "HEADER_READ_TIMEOUT_MS",
                10_000,
                100,
                300_000,
            )?),
            max_connections: vars.ranged("MAX_CONNECTIONS", 4096, 1, 1_000_000)?,
            shutdown_timeout: Duration::from_millis(vars.ranged(
                "SHUTDOWN_TIMEOUT_MS",
                15_000,
                100,
                600_000,
            )?),
            idempotency_ttl: Duration::from_secs(vars.ranged(
                "IDEMPOTENCY_TTL_SECS",
                86_400,
                1,
                30 * 86_400,
            )?),
            idempotency_max_keys: vars.ranged("IDEMPOTENCY_MAX_KEYS", 100_000, 1, 10_000_000)?,
            rate_limit_per_key: vars.parse("RATE_LIMIT_PER_KEY", 0)?,
            sns_batch_linger: Duration::from_millis(sns_batch_linger_ms),
            sns_lean_client: match vars.get("SNS_CLIENT").as_deref() {
                None | Some("sdk") => false,
                Some("lean") => true,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: "SNS_CLIENT".into(),
                        reason: format!("{other:?} is not one of: sdk, lean"),
                    });
                }
            },
            delivery: delivery_from(&vars, &tenants)?,
            templates: templates_from(&vars, &tenants)?,
            tenants,
            status: status_from(&vars)?,
            aws_timeouts: aws_timeouts_from(&vars)?,
            webhooks: webhooks_from(&vars)?,
            log: log_from(&vars)?,
        })
    }
}

impl ConsumerConfig {
    /// Reads the consumer's configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the consumer's configuration through `lookup`.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        let sns_topic_arn = vars.get("SNS_TOPIC_ARN");
        if sns_topic_arn
            .as_ref()
            .is_some_and(|a| !a.starts_with("arn:"))
        {
            return Err(ConfigError::Invalid {
                var: "SNS_TOPIC_ARN".into(),
                reason: "must be a topic ARN (arn:aws:sns:<region>:<account>:<name>)".into(),
            });
        }
        let tenants = Arc::new(tenants_from(&vars, None)?);
        Ok(Self {
            sqs_queue_url: vars.get("SQS_QUEUE_URL"),
            media_bucket: vars.get("MEDIA_BUCKET"),
            sns_topic_arn,
            metrics_host: match vars.get("HOST") {
                None => IpAddr::from([0, 0, 0, 0]),
                Some(raw) => raw.parse().map_err(|_| ConfigError::Invalid {
                    var: "HOST".into(),
                    reason: format!("{raw:?} is not an IP address"),
                })?,
            },
            metrics_port: match vars.get("METRICS_PORT") {
                Some(_) if metrics_on(&vars)? => {
                    Some(vars.ranged("METRICS_PORT", 9090, 1, 65_535)?)
                }
                _ => None,
            },
            delivery: delivery_from(&vars, &tenants)?,
            tenants,
            status: status_from(&vars)?,
            aws_timeouts: aws_timeouts_from(&vars)?,
            log: log_from(&vars)?,
        })
    }
}

/// Shortest webhook secret accepted: a guessable one lets anyone forge
/// statuses, inbound messages and opt-outs.
const MIN_WEBHOOK_SECRET_CHARS: usize = 16;

/// A webhook secret, refused when shorter than [`MIN_WEBHOOK_SECRET_CHARS`].
fn webhook_secret(vars: &Vars<'_>, var: &str) -> Result<Option<Secret>, ConfigError> {
    match vars.get(var) {
        Some(v) if v.chars().count() < MIN_WEBHOOK_SECRET_CHARS => Err(ConfigError::Invalid {
            var: var.into(),
            reason: format!(
                "is shorter than {MIN_WEBHOOK_SECRET_CHARS} characters: use a long random value"
            ),
        }),
        v => Ok(v.map(Secret::new)),
    }
}

fn webhooks_from(vars: &Vars<'_>) -> Result<WebhookConfig, ConfigError> {
    let max_body_bytes = vars.ranged("WEBHOOK_MAX_BODY_BYTES", 4 << 20, 1024, 64 << 20)?;
    let bodies_max_bytes = vars.ranged("WEBHOOK_BODIES_MAX_BYTES", 16 << 20, 1024, 1 << 30)?;
    if bodies_max_bytes < max_body_bytes {
        return Err(ConfigError::Invalid {
            var: "WEBHOOK_BODIES_MAX_BYTES".into(),
            reason: format!(
                "is {bodies_max_bytes}, less than one body's limit (WEBHOOK_MAX_BODY_BYTES, {max_body_bytes})"
            ),
        });
    }
    let infobip_basic = match vars.get("INFOBIP_WEBHOOK_BASIC") {
        None => None,
        Some(b) => match b.split_once(':') {
            Some((user, password))
                if !user.is_empty() && password.chars().count() >= MIN_WEBHOOK_SECRET_CHARS =>
            {
                Some(Secret::new(b))
            }
            _ => {
                return Err(ConfigError::Invalid {
                    var: "INFOBIP_WEBHOOK_BASIC".into(),
                    reason: format!(
                        "must be user:password with a user and a password of at least {MIN_WEBHOOK_SECRET_CHARS} characters"
                    ),
                });
            }
        },
    };
    Ok(WebhookConfig {
        // Off unless set: `on_off` reads an unset switch as on.
        whatsapp_auto_read: vars.get("WHATSAPP_AUTO_READ").is_some()
            && on_off(vars, "WHATSAPP_AUTO_READ")?,
        whatsapp_verify_token: webhook_secret(vars, "WHATSAPP_VERIFY_TOKEN")?,
        whatsapp_app_secret: webhook_secret(vars, "WHATSAPP_APP_SECRET")?,
        infobip_secret: webhook_secret(vars, "INFOBIP_WEBHOOK_SECRET")?,
        infobip_basic,
        infobip_signature_header: vars
            .get("INFOBIP_SIGNATURE_HEADER")
            .unwrap_or_else(|| "X-Infobip-Signature".into()),
        max_body_bytes,
        bodies_max_bytes,
        opt_out_keywords: match vars.get("OPT_OUT_KEYWORDS") {
            None => DEFAULT_OPT_OUT_KEYWORDS.map(str::to_owned).to_vec(),
            Some(list) => list
                .split(',')
                .map(|k| k.trim().to_uppercase())
                .filter(|k| !k.is_empty())
                .collect(),
        },
    })
}

impl AwsTimeouts {
    /// Reads the limits alone (the secrets read before the rest of the
    /// configuration need them).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        aws_timeouts_from(&Vars(lookup))
    }
}

fn aws_timeouts_from(vars: &Vars<'_>) -> Result<AwsTimeouts, ConfigError> {
    let attempt = vars.ranged("AWS_ATTEMPT_TIMEOUT_MS", 3_000, 100, 120_000)?;
    let operation = vars.ranged("AWS_OPERATION_TIMEOUT_MS", 8_000, 100, 300_000)?;
    if operation < attempt {
        return Err(ConfigError::Invalid {
            var: "AWS_OPERATION_TIMEOUT_MS".into(),
            reason: format!(
                "is {operation} ms, less than AWS_ATTEMPT_TIMEOUT_MS ({attempt} ms): an operation is one or more attempts"
            ),
        });
    }
    Ok(AwsTimeouts {
        attempt: Duration::from_millis(attempt),
        operation: Duration::from_millis(operation),
    })
}

/// `SNS_TOPIC_ARN`, checked against `MAX_BODY_BYTES`: a body SNS can never
/// take would be a 503 for ever, so the setting is refused. (Envelopes over
/// SNS's limit from smaller bodies are a 413 at publish.)
fn sns_topic_from(vars: &Vars<'_>, max_body_bytes: usize) -> Result<Option<String>, ConfigError> {
    let sns_topic_arn = vars.get("SNS_TOPIC_ARN");
    if let Some(arn) = &sns_topic_arn
        && !arn.starts_with("arn:")
    {
        return Err(ConfigError::Invalid {
            var: "SNS_TOPIC_ARN".into(),
            reason: "must be a topic ARN (arn:aws:sns:<region>:<account>:<name>)".into(),
        });
    }
    if sns_topic_arn.is_some() && max_body_bytes > SNS_MAX_MESSAGE_BYTES {
        return Err(ConfigError::Invalid {
            var: "MAX_BODY_BYTES".into(),
            reason: format!(
                "is {max_body_bytes}, but SNS takes at most {SNS_MAX_MESSAGE_BYTES} bytes per message: lower it when SNS_TOPIC_ARN is set"
            ),
        });
    }
    Ok(sns_topic_arn)
}

/// `ADMIN_KEY_IDS`: ids that must be in `API_KEYS`.
fn admin_key_ids_from(vars: &Vars<'_>, api_keys: &[ApiKey]) -> Result<Vec<String>, ConfigError> {
    let admin_key_ids: Vec<String> = vars
        .get("ADMIN_KEY_IDS")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(unknown) = admin_key_ids
        .iter()
        .find(|id| !api_keys.iter().any(|k| &k.id == *id))
    {
        return Err(ConfigError::Invalid {
            var: "ADMIN_KEY_IDS".into(),
            reason: format!("{unknown:?} is not an id in API_KEYS"),
        });
    }
    Ok(admin_key_ids)
}

fn status_from(vars: &Vars<'_>) -> Result<StatusConfig, ConfigError> {
    let invalid = |var: &str, reason: &str| ConfigError::Invalid {
        var: var.to_owned(),
        reason: reason.to_owned(),
    };
    let events_topic_arn = vars.get("EVENTS_TOPIC_ARN");
    if events_topic_arn
        .as_ref()
        .is_some_and(|a| !a.starts_with("arn:"))
    {
        return Err(invalid(
            "EVENTS_TOPIC_ARN",
            "must be a topic ARN (arn:aws:sns:<region>:<account>:<name>)",
        ));
    }
    let events_webhook = match (
        vars.get("EVENTS_WEBHOOK_URL"),
        vars.get("EVENTS_WEBHOOK_SECRET"),
    ) {
        (None, _) => None,
        (Some(url), _)
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || !url.validate_url() =>
        {
            return Err(invalid(
                "EVENTS_WEBHOOK_URL",
                "must be an http:// or https:// URL",
            ));
        }
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                var: "EVENTS_WEBHOOK_SECRET",
                hint: "events are signed: set a Standard Webhooks secret (whsec_<base64>) shared with the receiver",
            });
        }
        (Some(url), Some(secret)) => Some(EventsWebhookConfig {
            url,
            secret: crate::events::signing::WebhookSecret::parse(&secret)
                .map_err(|reason| invalid("EVENTS_WEBHOOK_SECRET", &reason.to_string()))?,
        }),
    };
    Ok(StatusConfig {
        table: vars.get("STATUS_TABLE"),
        ttl: Duration::from_secs(86_400 * vars.ranged("STATUS_TTL_DAYS", 30u64, 1, 3650)?),
        events_topic_arn,
        events_webhook,
    })
}

fn api_keys_from(vars: &Vars<'_>) -> Result<Vec<ApiKey>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        var: "API_KEYS".into(),
        reason,
    };
    let keys = match (vars.get("API_KEYS"), vars.get("API_KEY")) {
        (Some(list), _) => list
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (id, key) = pair
                    .split_once(':')
                    .ok_or_else(|| invalid("each entry must be id:key".into()))?;
                let (id, key) = (id.trim(), key.trim());
                if id.is_empty()
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(invalid(
                        "each id must be letters, digits, '-' or '_'".into(),
                    ));
                }
                Ok(ApiKey {
                    id: id.to_owned(),
                    key: Secret::new(key),
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        (None, Some(key)) => vec![ApiKey {
            id: "default".into(),
            key: Secret::new(key),
        }],
        (None, None) => {
            return Err(ConfigError::Missing {
                var: "API_KEYS",
                hint: "set API_KEYS=id:key[,id:key…] (generate a key with: openssl rand -hex 32)",
            });
        }
    };
    if keys.is_empty() {
        return Err(invalid("no keys given".into()));
    }
    // Short keys can be guessed; 16 characters is the least we accept.
    if keys.iter().any(|k| k.key.expose().len() < 16) {
        return Err(invalid(
            "every key must be at least 16 characters (openssl rand -hex 32)".into(),
        ));
    }
    let mut ids = HashSet::new();
    if let Some(dup) = keys.iter().find(|k| !ids.insert(k.id.as_str())) {
        return Err(invalid(format!("id {:?} appears twice", dup.id)));
    }
    Ok(keys)
}

/// The WhatsApp Cloud API credentials and settings, when a token and a phone
/// number id are set (one without the other is an error).
/// The WhatsApp numbers Herald sends from: the deployment's
/// (`WHATSAPP_ACCESS_TOKEN`, `WHATSAPP_PHONE_NUMBER_ID`) first, then each
/// number `TENANTS_FILE` names, with the same API settings.
fn whatsapp_from(vars: &Vars<'_>, tenants: &Tenants) -> Result<Vec<WhatsAppConfig>, ConfigError> {
    let token = vars.get("WHATSAPP_ACCESS_TOKEN");
    let phone_number_id = vars.get("WHATSAPP_PHONE_NUMBER_ID");
    let base_url = vars
        .get("WHATSAPP_API_BASE_URL")
        .unwrap_or_else(|| "https://graph.facebook.com".into());
    let timeout_ms = vars.ranged("WHATSAPP_TIMEOUT_MS", 10_000, 100, 120_000)?;
    let max_mps = vars.ranged("WHATSAPP_MAX_MPS", 80, 1, 1000)?;
    let pair_rate = vars.ranged("WHATSAPP_PAIR_RATE", 1, 0, 1000)?;
    let api_version = vars
        .get("WHATSAPP_API_VERSION")
        .unwrap_or_else(|| DEFAULT_WHATSAPP_API_VERSION.into());
    if !(api_version.starts_with('v') && api_version[1..].parse::<f32>().is_ok()) {
        return Err(ConfigError::Invalid {
            var: "WHATSAPP_API_VERSION".into(),
            reason: "must look like v25.0".into(),
        });
    }
    let whatsapp = |token: String,
                    phone_number_id: String|
     -> Result<WhatsAppConfig, ConfigError> {
        if !base_url.validate_url()
            || !(base_url.starts_with("http://") || base_url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                var: "WHATSAPP_API_BASE_URL".into(),
                reason: "must be an absolute http(s) URL".into(),
            });
        }
        if !phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::Invalid {
                var: "WHATSAPP_PHONE_NUMBER_ID".into(),
                reason: "must be the numeric phone number id from the WhatsApp Manager, not the phone number".into(),
            });
        }
        Ok(WhatsAppConfig {
            access_token: Secret::new(token),
            phone_number_id,
            api_version: api_version.clone(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            request_timeout: Duration::from_millis(timeout_ms),
            max_mps,
            pair_rate,
        })
    };
    let deployment = match (token, phone_number_id) {
        (Some(token), Some(id)) => Some(whatsapp(token, id)?),
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                var: "WHATSAPP_PHONE_NUMBER_ID",
                hint: "WHATSAPP_ACCESS_TOKEN is set, so the phone number id is needed too",
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                var: "WHATSAPP_ACCESS_TOKEN",
                hint: "WHATSAPP_PHONE_NUMBER_ID is set, so the token is needed too",
            });
        }
        (None, None) => None,
    };
    let mut numbers: Vec<WhatsAppConfig> = deployment.into_iter().collect();
    for (_, number) in tenants.numbers() {
        let mut config = whatsapp(
            number.token.expose().to_owned(),
            number.phone_number_id.clone(),
        )?;
        config.max_mps = number.max_mps.unwrap_or(max_mps);
        numbers.push(config);
    }
    Ok(numbers)
}

/// `DELIVERY`, and whether the console was chosen only for want of credentials.
fn delivery_mode(
    vars: &Vars<'_>,
    whatsapp: Vec<WhatsAppConfig>,
    infobip: Option<Box<InfobipConfig>>,
) -> Result<(DeliveryMode, bool), ConfigError> {
    let mode = match vars.get("DELIVERY").as_deref() {
        Some("console") => (DeliveryMode::Console, false),
        Some("whatsapp") if whatsapp.is_empty() => {
            return Err(ConfigError::Missing {
                var: "WHATSAPP_ACCESS_TOKEN",
                hint: "DELIVERY=whatsapp needs the Cloud API token and WHATSAPP_PHONE_NUMBER_ID",
            });
        }
        Some("sms") if infobip.is_none() => {
            return Err(ConfigError::Missing {
                var: "INFOBIP_API_KEY",
                hint: "DELIVERY=sms needs INFOBIP_BASE_URL and INFOBIP_API_KEY",
            });
        }
        None if whatsapp.is_empty() && infobip.is_none() => (DeliveryMode::Console, true),
        Some("providers") if whatsapp.is_empty() && infobip.is_none() => {
            return Err(ConfigError::Missing {
                var: "WHATSAPP_ACCESS_TOKEN",
                hint: "DELIVERY=providers needs WhatsApp or Infobip credentials",
            });
        }
        None | Some("whatsapp" | "sms" | "providers") => {
            (DeliveryMode::Providers { whatsapp, infobip }, false)
        }
        Some(other) => {
            return Err(ConfigError::Invalid {
                var: "DELIVERY".into(),
                reason: format!("{other:?} is not one of: providers, whatsapp, sms, console"),
            });
        }
    };
    Ok(mode)
}

fn delivery_from(vars: &Vars<'_>, tenants: &Tenants) -> Result<DeliveryConfig, ConfigError> {
    let whatsapp = whatsapp_from(vars, tenants)?;
    let infobip = infobip_from(vars)?;
    let (mode, console_by_default) = delivery_mode(vars, whatsapp, infobip)?;
    Ok(DeliveryConfig {
        mode,
        console_by_default,
        max_attempts: vars.ranged("DELIVERY_MAX_ATTEMPTS", 8, 1, 100)?,
        concurrency: match vars.get("DELIVERY_CONCURRENCY") {
            None => None,
            Some(_) => Some(vars.ranged("DELIVERY_CONCURRENCY", 16, 1, 10_000)?),
        },
        circuit_cooldown: Duration::from_millis(vars.ranged(
            "CIRCUIT_COOLDOWN_MS",
            30_000,
            100,
            3_600_000,
        )?),
        retry_base: Duration::from_millis(vars.ranged(
            "DELIVERY_RETRY_BASE_MS",
            2000,
            1,
            3_600_000,
        )?),
        retry_max: Duration::from_millis(vars.ranged(
            "DELIVERY_RETRY_MAX_MS",
            300_000,
            1,
            43_200_000,
        )?),
        window_checks: on_off(vars, "WHATSAPP_WINDOW")?,
    })
}

/// `TENANTS_FILE`, checked against `key_ids` where the process has keys;
/// without it, the one tenant `default`. Token references resolve through
/// the lookup: `env:NAME` as the variable `NAME`, `secretsmanager:NAME` as
/// read by `secrets::load_config`.
fn tenants_from(vars: &Vars<'_>, key_ids: Option<&[String]>) -> Result<Tenants, ConfigError> {
    let deployment_number = vars.get("WHATSAPP_PHONE_NUMBER_ID");
    let deployment_sender = vars.get("INFOBIP_SENDER");
    let Some(path) = vars.get("TENANTS_FILE") else {
        return Ok(Tenants::single(deployment_number, deployment_sender));
    };
    let token = |reference: &str| match reference.strip_prefix("env:") {
        Some(name) => vars.get(name),
        None => vars.get(reference),
    };
    let prefix = vars.get("TENANT_SECRET_PREFIX");
    let known = tenants_file::Known {
        key_ids,
        token: &token,
        secret_prefix: prefix.as_deref(),
        deployment: (deployment_number.as_deref(), deployment_sender.as_deref()),
    };
    let list = tenants_file::load(&path, &known).map_err(|e| ConfigError::Invalid {
        var: "TENANTS_FILE".into(),
        reason: e.to_string(),
    })?;
    Ok(Tenants::from_file(
        list,
        deployment_number,
        deployment_sender,
    ))
}

/// `WHATSAPP_BUSINESS_ACCOUNT_ID` (the deployment's number) and the
/// tenants' `waba_id`s, grouped by account; `TEMPLATE_SYNC_SECS`.
fn templates_from(vars: &Vars<'_>, tenants: &Tenants) -> Result<TemplateConfig, ConfigError> {
    let every = Duration::from_secs(vars.ranged("TEMPLATE_SYNC_SECS", 600, 1, 86_400)?);
    let mut accounts: Vec<TemplateAccount> = Vec::new();
    let mut add = |waba_id: String, number_id: String, token: Secret| match accounts
        .iter_mut()
        .find(|a| a.waba_id == waba_id)
    {
        Some(a) => a.number_ids.push(number_id),
        None => accounts.push(TemplateAccount {
            waba_id,
            number_ids: vec![number_id],
            token,
        }),
    };
    if let Some(waba_id) = vars.get("WHATSAPP_BUSINESS_ACCOUNT_ID") {
        if waba_id.is_empty() || !waba_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::Invalid {
                var: "WHATSAPP_BUSINESS_ACCOUNT_ID".into(),
                reason: "must be the numeric WhatsApp Business Account id".into(),
            });
        }
        let (Some(number_id), Some(token)) = (
            vars.get("WHATSAPP_PHONE_NUMBER_ID"),
            vars.get("WHATSAPP_ACCESS_TOKEN"),
        ) else {
            return Err(ConfigError::Missing {
                var: "WHATSAPP_ACCESS_TOKEN",
                hint: "WHATSAPP_BUSINESS_ACCOUNT_ID is set: templates are listed with the token of WHATSAPP_PHONE_NUMBER_ID",
            });
        };
        add(waba_id, number_id, Secret::new(token));
    }
    for (_, number) in tenants.numbers() {
        if let Some(waba_id) = &number.waba_id {
            add(
                waba_id.clone(),
                number.phone_number_id.clone(),
                number.token.clone(),
            );
        }
    }
    Ok(TemplateConfig {
        every,
        accounts,
        base_url: vars.get("WHATSAPP_API_BASE_URL").map_or_else(
            || "https://graph.facebook.com".into(),
            |u| u.trim_end_matches('/').to_owned(),
        ),
        api_version: vars
            .get("WHATSAPP_API_VERSION")
            .unwrap_or_else(|| DEFAULT_WHATSAPP_API_VERSION.into()),
        timeout: Duration::from_millis(vars.ranged("WHATSAPP_TIMEOUT_MS", 10_000, 100, 120_000)?),
    })
}

/// `METRICS`: `on` (default) or `off`.
fn metrics_on(vars: &Vars<'_>) -> Result<bool, ConfigError> {
    on_off(vars, "METRICS")
}

/// A switch: `on` (default) or `off`.
fn on_off(vars: &Vars<'_>, name: &str) -> Result<bool, ConfigError> {
    match vars.get(name).as_deref() {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(ConfigError::Invalid {
            var: name.to_owned(),
            reason: format!("{other:?} is not one of: on, off"),
        }),
    }
}

/// True for an absolute `http://` or `https://` URL.
fn is_http_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://")) && url.validate_url()
}

/// The Infobip account, when `INFOBIP_BASE_URL` and `INFOBIP_API_KEY` are set.
fn infobip_from(vars: &Vars<'_>) -> Result<Option<Box<InfobipConfig>>, ConfigError> {
    let invalid = |var: &str, reason: &str| ConfigError::Invalid {
        var: var.to_owned(),
        reason: reason.to_owned(),
    };
    let public_base_url = match vars.get("PUBLIC_BASE_URL") {
        Some(url) if !is_http_url(&url) => {
            return Err(invalid(
                "PUBLIC_BASE_URL",
                "must be the absolute https:// URL providers reach Herald at",
            ));
        }
        url => url.map(|u| u.trim_end_matches('/').to_owned()),
    };
    let sender = vars.get("INFOBIP_SENDER");
    if let Some(problem) = sender
        .as_deref()
        .and_then(crate::domain::sms::sender_problem)
    {
        return Err(invalid("INFOBIP_SENDER", problem));
    }
    let timeout_ms = vars.ranged("INFOBIP_TIMEOUT_MS", 10_000, 100, 120_000)?;
    let max_mps = vars.ranged("SMS_MAX_MPS", 20, 1, 10_000)?;
    match (vars.get("INFOBIP_BASE_URL"), vars.get("INFOBIP_API_KEY")) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Missing {
            var: "INFOBIP_API_KEY",
            hint: "INFOBIP_BASE_URL is set, so the API key is needed too",
        }),
        (None, Some(_)) => Err(ConfigError::Missing {
            var: "INFOBIP_BASE_URL",
            hint: "INFOBIP_API_KEY is set, so the account's base URL (https://xxxxx.api.infobip.com) is needed too",
        }),
        (Some(url), Some(_)) if !is_http_url(&url) => Err(invalid(
            "INFOBIP_BASE_URL",
            "must be an absolute http(s) URL such as https://xxxxx.api.infobip.com",
        )),
        (Some(url), Some(key)) => Ok(Some(Box::new(InfobipConfig {
            base_url: url.trim_end_matches('/').to_owned(),
            api_key: Secret::new(key),
            sender,
            request_timeout: Duration::from_millis(timeout_ms),
            max_mps,
            public_base_url,
        }))),
    }
}

fn log_from(vars: &Vars<'_>) -> Result<LogConfig, ConfigError> {
    // Under Lambda, the function's logging configuration (AWS_LAMBDA_LOG_FORMAT,
    // AWS_LAMBDA_LOG_LEVEL, which Lambda sets) decides, as it does for
    // lambda_runtime's own subscriber; RUST_LOG and LOG_LEVEL still win for the level.
    let lambda_level =
        vars.get("AWS_LAMBDA_LOG_LEVEL")
            .map(|l| match l.to_ascii_lowercase().as_str() {
                "fatal" => "error".to_owned(),
                other => other.to_owned(),
            });
    let filter = vars
        .get("RUST_LOG")
        .or_else(|| vars.get("LOG_LEVEL"))
        .or(lambda_level)
        .unwrap_or_else(|| "info".into());
    let format = match (
        vars.get("AWS_LAMBDA_LOG_FORMAT").as_deref(),
        vars.get("LOG_FORMAT").as_deref(),
    ) {
        (Some(lambda), _) if lambda.eq_ignore_ascii_case("json") => LogFormat::Json,
        (Some(_), _) | (None, Some("text")) => LogFormat::Text,
        (None, None | Some("json")) => LogFormat::Json,
        (None, Some("pretty")) => LogFormat::Pretty,
        (None, Some(other)) => {
            return Err(ConfigError::Invalid {
                var: "LOG_FORMAT".into(),
                reason: format!("{other:?} is not one of: json, pretty, text"),
            });
        }
    };
    Ok(LogConfig { filter, format })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "0123456789abcdef0123";

    fn gateway(vars: &[(&str, &str)]) -> Result<GatewayConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        GatewayConfig::from_lookup(&move |name| map.get(name).cloned())
    }

    fn error_line(vars: &[(&str, &str)]) -> String {
        gateway(vars)
            .expect_err("configuration should be refused")
            .to_string()
    }

    #[test]
    fn defaults_apply_when_only_a_key_is_set() {
        let c = gateway(&[("API_KEY", KEY)]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.max_body_bytes, 65_536);
        assert_eq!(c.api_keys[0].id, "default");
        assert!(c.sns_topic_arn.is_none());
        assert!(matches!(c.delivery.mode, DeliveryMode::Console));
        assert!(c.delivery.console_by_default);
        assert_eq!(c.delivery.concurrency, None);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn api_keys_are_parsed_as_id_key_pairs() {
        let c = gateway(&[("API_KEYS", &format!("ops:{KEY}, billing:{KEY}x"))]).unwrap();
        let ids: Vec<_> = c.api_keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["ops", "billing"]);
        assert_eq!(c.api_keys[1].key.expose(), format!("{KEY}x"));
    }

    #[test]
    fn each_bad_variable_is_named_in_one_line() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "API_KEYS is not set"),
            (&[("API_KEYS", "nocolon")], "API_KEYS is invalid"),
            (&[("API_KEYS", "ops:short")], "at least 16 characters"),
            (
                &[("API_KEYS", "a:0123456789abcdef,a:0123456789abcdeg")],
                "appears twice",
            ),
            (&[("API_KEY", KEY), ("PORT", "http")], "PORT is invalid"),
            (
                &[("API_KEY", KEY), ("HOST", "localhost:3000")],
                "HOST is invalid",
            ),
            (
                &[("API_KEY", KEY), ("MAX_BODY_BYTES", "10")],
                "MAX_BODY_BYTES is invalid",
            ),
            (
                &[("API_KEY", KEY), ("WHATSAPP_MAX_MPS", "0")],
                "WHATSAPP_MAX_MPS is invalid",
            ),
            (
                &[("API_KEY", KEY), ("IDEMPOTENCY_TTL_SECS", "0")],
                "IDEMPOTENCY_TTL_SECS is invalid",
            ),
            (
                &[("API_KEY", KEY), ("IDEMPOTENCY_MAX_KEYS", "0")],
                "IDEMPOTENCY_MAX_KEYS is invalid",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:1:t"),
                    ("MAX_BODY_BYTES", "1048576"),
                ],
                "MAX_BODY_BYTES is invalid",
            ),
            (
                &[("API_KEY", KEY), ("ADMIN_KEY_IDS", "root")],
                "ADMIN_KEY_IDS is invalid",
            ),
            (
                &[("API_KEY", KEY), ("LOG_FORMAT", "xml")],
                "LOG_FORMAT is invalid",
            ),
            (
                &[("API_KEY", KEY), ("DELIVERY", "pigeon")],
                "DELIVERY is invalid",
            ),
            (
                &[("API_KEY", KEY), ("DELIVERY", "sms")],
                "INFOBIP_API_KEY is not set",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("INFOBIP_BASE_URL", "https://x.api.infobip.com"),
                ],
                "INFOBIP_API_KEY is not set",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("INFOBIP_BASE_URL", "infobip"),
                    ("INFOBIP_API_KEY", "k"),
                ],
                "INFOBIP_BASE_URL is invalid",
            ),
            (
                &[("API_KEY", KEY), ("INFOBIP_SENDER", "Far too long a name")],
                "INFOBIP_SENDER is invalid",
            ),
            (
                &[("API_KEY", KEY), ("PUBLIC_BASE_URL", "gw.example.com")],
                "PUBLIC_BASE_URL is invalid",
            ),
            (
                &[("API_KEY", KEY), ("SMS_MAX_SEGMENTS", "0")],
                "SMS_MAX_SEGMENTS is invalid",
            ),
            (
                &[("API_KEY", KEY), ("DELIVERY", "whatsapp")],
                "WHATSAPP_ACCESS_TOKEN is not set",
            ),
            (
                &[("API_KEY", KEY), ("WHATSAPP_ACCESS_TOKEN", "t")],
                "WHATSAPP_PHONE_NUMBER_ID is not set",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("WHATSAPP_ACCESS_TOKEN", "t"),
                    ("WHATSAPP_PHONE_NUMBER_ID", "+1415"),
                ],
                "WHATSAPP_PHONE_NUMBER_ID is invalid",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("WHATSAPP_ACCESS_TOKEN", "t"),
                    ("WHATSAPP_PHONE_NUMBER_ID", "1"),
                    ("WHATSAPP_API_BASE_URL", "graph"),
                ],
                "WHATSAPP_API_BASE_URL is invalid",
            ),
            (
                &[("API_KEY", KEY), ("SNS_TOPIC_ARN", "my-topic")],
                "SNS_TOPIC_ARN is invalid",
            ),
            (
                &[("API_KEY", KEY), ("WHATSAPP_API_VERSION", "25")],
                "WHATSAPP_API_VERSION is invalid",
            ),
            // Webhook and event secrets that anyone could guess or that
            // authenticate nothing.
            (
                &[("API_KEY", KEY), ("INFOBIP_WEBHOOK_BASIC", ":")],
                "INFOBIP_WEBHOOK_BASIC is invalid",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("INFOBIP_WEBHOOK_BASIC", "infobip:s3cret"),
                ],
                "INFOBIP_WEBHOOK_BASIC is invalid",
            ),
            (
                &[("API_KEY", KEY), ("INFOBIP_WEBHOOK_SECRET", "short")],
                "INFOBIP_WEBHOOK_SECRET is invalid",
            ),
            (
                &[("API_KEY", KEY), ("WHATSAPP_APP_SECRET", "0123456789")],
                "WHATSAPP_APP_SECRET is invalid",
            ),
            (
                &[("API_KEY", KEY), ("WHATSAPP_VERIFY_TOKEN", "token")],
                "WHATSAPP_VERIFY_TOKEN is invalid",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("EVENTS_WEBHOOK_URL", "https://app.example.com/events"),
                    ("EVENTS_WEBHOOK_SECRET", "whsec_"),
                ],
                "EVENTS_WEBHOOK_SECRET is invalid",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("EVENTS_WEBHOOK_URL", "https://app.example.com/events"),
                    ("EVENTS_WEBHOOK_SECRET", "whsec_c2hvcnQ="),
                ],
                "EVENTS_WEBHOOK_SECRET is invalid",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("WEBHOOK_MAX_BODY_BYTES", "1048576"),
                    ("WEBHOOK_BODIES_MAX_BYTES", "1024"),
                ],
                "WEBHOOK_BODIES_MAX_BYTES is invalid",
            ),
            (
                &[
                    ("API_KEY", KEY),
                    ("AWS_ATTEMPT_TIMEOUT_MS", "5000"),
                    ("AWS_OPERATION_TIMEOUT_MS", "1000"),
                ],
                "AWS_OPERATION_TIMEOUT_MS is invalid",
            ),
        ];
        for (vars, expected) in cases {
            let line = error_line(vars);
            assert!(
                line.contains(expected),
                "{vars:?}: {line:?} should contain {expected:?}"
            );
            assert!(!line.contains('\n'));
        }
    }

    /// `.env.example` copied to `.env` as it is starts nothing: its only
    /// required value is left for the operator to fill in.
    #[test]
    fn the_example_environment_holds_no_working_key() {
        let example = include_str!("../.env.example");
        let vars: Vec<(&str, &str)> = example
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        assert!(vars.iter().any(|(k, _)| *k == "API_KEYS"));
        assert!(error_line(&vars).contains("API_KEYS is not set"));
    }

    /// The events receiver's URL is logged without its credentials or query.
    #[test]
    fn the_events_url_is_logged_without_credentials() {
        let c = gateway(&[
            ("API_KEY", KEY),
            (
                "EVENTS_WEBHOOK_URL",
                "https://user:pa55word@app.example.com/events?token=t0k3n",
            ),
            (
                "EVENTS_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ])
        .unwrap();
        let url = c.status.events_webhook.unwrap().loggable_url();
        assert_eq!(url, "https://app.example.com/events");
    }

    #[test]
    fn credentials_select_whatsapp_delivery() {
        let c = gateway(&[
            ("API_KEY", KEY),
            ("WHATSAPP_ACCESS_TOKEN", "EAAG-secret"),
            ("WHATSAPP_PHONE_NUMBER_ID", "106540352242922"),
            ("WHATSAPP_API_BASE_URL", "http://127.0.0.1:9/"),
        ])
        .unwrap();
        let DeliveryMode::Providers {
            whatsapp: mut numbers,
            infobip: None,
        } = c.delivery.mode
        else {
            panic!("expected WhatsApp delivery")
        };
        let w = numbers.remove(0);
        assert_eq!(w.base_url, "http://127.0.0.1:9");
        assert_eq!(w.api_version, DEFAULT_WHATSAPP_API_VERSION);
        assert!(!c.delivery.console_by_default);
    }

    #[test]
    fn lambda_s_log_format_and_level_decide_under_lambda() {
        let log =
            |vars: &[(&str, &str)]| gateway(&[&[("API_KEY", KEY)], vars].concat()).unwrap().log;
        assert_eq!(log(&[]).format, LogFormat::Json);
        assert_eq!(
            log(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]).format,
            LogFormat::Text
        );
        assert_eq!(
            log(&[("AWS_LAMBDA_LOG_FORMAT", "JSON"), ("LOG_FORMAT", "pretty")]).format,
            LogFormat::Json
        );
        assert_eq!(log(&[("LOG_FORMAT", "text")]).format, LogFormat::Text);
        assert_eq!(log(&[("AWS_LAMBDA_LOG_LEVEL", "WARN")]).filter, "warn");
        assert_eq!(log(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]).filter, "error");
        assert_eq!(
            log(&[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("LOG_LEVEL", "debug")]).filter,
            "debug"
        );
    }

    #[test]
    fn infobip_credentials_add_sms_delivery() {
        let c = gateway(&[
            ("API_KEY", KEY),
            ("INFOBIP_BASE_URL", "https://abc12.api.infobip.com/"),
            ("INFOBIP_API_KEY", "ib-secret"),
            ("INFOBIP_SENDER", "Herald"),
            ("PUBLIC_BASE_URL", "https://gw.example.com/"),
        ])
        .unwrap();
        let DeliveryMode::Providers {
            whatsapp,
            infobip: Some(ib),
        } = &c.delivery.mode
        else {
            panic!("expected SMS delivery")
        };
        assert!(whatsapp.is_empty());
        assert_eq!(ib.base_url, "https://abc12.api.infobip.com");
        assert_eq!(
            ib.public_base_url.as_deref(),
            Some("https://gw.example.com")
        );
        assert_eq!(ib.max_mps, 20);
        assert!(c.delivery.mode.delivers(crate::contract::Channel::Sms));
        assert!(!c.delivery.mode.delivers(crate::contract::Channel::Whatsapp));
        assert!(!format!("{c:?}").contains("ib-secret"));
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let c = gateway(&[
            ("API_KEYS", &format!("ops:{KEY}")),
            ("WHATSAPP_ACCESS_TOKEN", "EAAG-very-secret-token"),
            ("WHATSAPP_PHONE_NUMBER_ID", "1065"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains(KEY));
        assert!(!debug.contains("EAAG-very-secret-token"));
        assert!(debug.contains("[redacted]"));
    }
}
