//! `[[actions]]`: HTTP POSTs on incident events.

use super::*;

/// An HTTP(S) POST made for incident events (docs/deploy.md, "Actions").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Letters, digits, `-` and `_`: in logs and the store.
    pub id: String,
    /// `http://` or `https://`. A robot's key is never written here: put `{key}` where it
    /// goes (`...send?key={key}`) and give `key_file` or `key_env`.
    pub url: String,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
    /// The body: "json" (the event, schema v1; default), "wecom" (企业微信 group robot
    /// markdown) or "dingtalk" (钉钉 group robot markdown).
    #[serde(default)]
    pub format: ActionFormat,
    /// Kinds that trigger it; empty = every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Event states that trigger it: "opened", "updated", "closed". Default ["opened"].
    #[serde(default = "default_action_on")]
    pub on: Vec<String>,
    /// The base of the snapshot link in robot messages, e.g. "http://192.168.1.10:8080"
    /// (the box's web server as staff reach it). Unset: no link.
    pub link_base: Option<String>,
    /// Per attempt. Default 5 s.
    #[serde(default = "default_action_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts before the action is given up (kept in the store, logged). Default 20:
    /// with the default backoff (1 s doubling to 5 min) about an hour and a half.
    #[serde(default = "default_action_attempts")]
    pub max_attempts: u32,
    /// The longest wait between two attempts (the wait doubles from 1 s). Default 5 min.
    #[serde(default = "default_action_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActionFormat {
    #[default]
    Json,
    Wecom,
    Dingtalk,
}

fn default_action_on() -> Vec<String> {
    vec!["opened".into()]
}

fn default_action_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_action_attempts() -> u32 {
    20
}

fn default_action_retry_max() -> Duration {
    Duration::from_secs(300)
}

/// The incident kind named `name` (its snake_case name in events).
pub(super) fn serde_plain_kind(name: &str) -> Option<crate::kind::Kind> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

impl ActionConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if !is_identifier(&self.id) {
            return fail(
                &["id"],
                format!("`{}` must be letters, digits, `-` or `_`", self.id),
            );
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return fail(&["url"], "must start with http:// or https://");
        }
        let has_key = self.key_file.is_some() || self.key_env.is_some();
        if self.url.contains("{key}") != has_key {
            return fail(
                &["url"],
                "put `{key}` in the url exactly when key_file or key_env gives the key (keys never go in the config text)",
            );
        }
        if let Some(bad) = self
            .on
            .iter()
            .find(|s| !matches!(s.as_str(), "opened" | "updated" | "closed"))
        {
            return fail(&["on"], format!("`{bad}` is not opened, updated or closed"));
        }
        if let Some(bad) = self.kinds.iter().find(|k| serde_plain_kind(k).is_none()) {
            return fail(&["kinds"], format!("`{bad}` is not an incident kind"));
        }
        if self.max_attempts == 0 || self.timeout.is_zero() {
            return fail(
                &["max_attempts"],
                "max_attempts and timeout must be above zero",
            );
        }
        if self.retry_max < Duration::from_secs(1) {
            return fail(&["retry_max"], "must be at least 1s");
        }
        Ok(())
    }
}
