//! `[mqtt]`: the broker, TLS, topics and the outbox bound.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum MqttProtocol {
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

/// The MQTT connection to the grid platform. Secrets are referenced, never stored here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// "3.1.1" (default) or "5".
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// Identifies this box within the site; the client id is `gridwatch-<site>-<box_id>`.
    #[serde(default = "default_box_id")]
    pub box_id: String,
    /// Topic prefix; `{site}` is replaced by the site id.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// false (default): a persistent session, so the broker keeps this box's command
    /// subscription while it is offline. true: start clean every time.
    #[serde(default)]
    pub clean_session: bool,
    pub username: Option<String>,
    /// File holding the password (first line). Preferred: keep it readable by the service only.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_every: Duration,
    /// First wait before reconnecting; doubles up to `reconnect_max`, with jitter.
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub outbox: OutboxConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) (PEM) to trust for the broker; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for brokers that authenticate clients by certificate.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Name to verify in the broker's certificate; default: `host`.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Most events waiting for delivery; beyond it the oldest `updated` events are dropped.
    pub max_events: u64,
    /// Most bytes waiting for delivery, same policy.
    pub max_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_events: 100_000,
            max_bytes: 256 << 20,
        }
    }
}

impl MqttConfig {
    /// The topic prefix with `{site}` filled in.
    pub fn prefix(&self, site: &str) -> String {
        self.topic_prefix
            .replace("{site}", site)
            .trim_end_matches('/')
            .to_string()
    }

    pub fn client_id(&self, site: &str) -> String {
        format!("gridwatch-{site}-{}", self.box_id)
    }

    /// Reads the password from the file or environment variable named in the config.
    pub fn password(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read mqtt.password_file {}: {e}", path.display()))?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| format!("mqtt.password_env names {var}, which is not set"));
        }
        Ok(None)
    }
}

fn default_mqtt_port() -> u16 {
    1883
}

fn default_box_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| is_identifier(h))
        .unwrap_or_else(|| "box".into())
}

fn default_topic_prefix() -> String {
    "gridwatch/v1/{site}".into()
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(30)
}

fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}

fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}

impl MqttConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.host.trim().is_empty() {
            return fail(&["host"], "is empty");
        }
        if self.port == 0 {
            return fail(
                &["port"],
                "must be 1..=65535 (1883 for MQTT, 8883 for MQTT over TLS)",
            );
        }
        if let Some(name) = self.tls.as_ref().and_then(|t| t.server_name.as_ref())
            && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return fail(
                &["tls", "server_name"],
                format!("`{name}` is not a DNS name or an IP address"),
            );
        }
        if !is_identifier(&self.box_id) {
            return fail(
                &["box_id"],
                format!("`{}` must be letters, digits, `-` or `_`", self.box_id),
            );
        }
        if self.topic_prefix.contains(['#', '+']) || self.topic_prefix.is_empty() {
            return fail(
                &["topic_prefix"],
                "must be non-empty, without MQTT wildcards",
            );
        }
        if self.keep_alive < Duration::from_secs(5) {
            return fail(&["keep_alive"], "must be at least 5s");
        }
        if self.heartbeat_every < Duration::from_secs(1) {
            return fail(&["heartbeat_every"], "must be at least 1s");
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return fail(
                &["reconnect_min"],
                "must be positive and at most reconnect_max",
            );
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            return fail(
                &["password_env"],
                "give password_file or password_env, not both",
            );
        }
        if let Some(tls) = &self.tls
            && tls.client_cert_file.is_some() != tls.client_key_file.is_some()
        {
            return fail(&["tls"], "client_cert_file and client_key_file go together");
        }
        Ok(())
    }
}
