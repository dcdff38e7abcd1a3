//! Actions stage: HTTP(S) POSTs made for incident events (`[[actions]]`): a JSON body of the
//! event for a relay box (an elevator controller that holds its doors), or the markdown
//! messages of WeCom (企业微信) and DingTalk (钉钉) group robots for the station's staff.
//!
//! No action is lost: its body is built when the event is stored and goes into the store's
//! `action_outbox` in the event's own transaction ([`Actions::bodies_for`] is called by
//! `Store::record_with_actions`); [`ActionSender`] posts what is due, deletes what was
//! delivered (a 2xx answer), and retries the rest with backoff (1 s doubling to 5 min)
//! until `max_attempts`, after which the row is kept as given up and logged, never retried
//! without bound. A box killed mid-way posts what is left after its restart.
//!
//! Keys (a robot's `key=`) come from files or environment variables into the URL's `{key}`;
//! logs and the store only ever show the URL as configured, with `{key}` in place.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{ActionFormat, Config};
use crate::incidents::{EventState, IncidentEvent};
use crate::rules::Kind;
use crate::store::{DueAction, Handle};

/// One configured action, its key read.
#[derive(Debug, Clone)]
pub struct Action {
    pub id: String,
    /// As configured, `{key}` unexpanded: what logs show.
    pub shown_url: String,
    url: String,
    format: ActionFormat,
    kinds: Vec<Kind>,
    on: Vec<EventState>,
    link_base: Option<String>,
    timeout: Duration,
    pub max_attempts: u32,
    retry_max: Duration,
}

/// The configured actions.
#[derive(Debug, Default)]
pub struct Actions {
    actions: Vec<Action>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("action {id}: cannot read its key from {from}: {message}")]
    Key {
        id: String,
        from: String,
        message: String,
    },
}

impl Actions {
    /// Reads each action's key from its file or environment variable.
    pub fn from_config(config: &Config) -> Result<Actions, ActionError> {
        let mut actions = Vec::new();
        for a in &config.actions {
            let key = match (&a.key_file, &a.key_env) {
                (Some(path), _) => {
                    let path = config.base_dir().join(path);
                    Some(
                        std::fs::read_to_string(&path)
                            .map_err(|e| ActionError::Key {
                                id: a.id.clone(),
                                from: path.display().to_string(),
                                message: e.to_string(),
                            })?
                            .trim()
                            .to_string(),
                    )
                }
                (None, Some(var)) => Some(std::env::var(var).map_err(|e| ActionError::Key {
                    id: a.id.clone(),
                    from: format!("${var}"),
                    message: e.to_string(),
                })?),
                (None, None) => None,
            };
            let url = match &key {
                Some(key) => a.url.replace("{key}", key),
                None => a.url.clone(),
            };
            actions.push(Action {
                id: a.id.clone(),
                shown_url: a.url.clone(),
                url,
                format: a.format,
                // Both checked by the config's validation.
                kinds: a.kinds.iter().filter_map(|k| by_name(k)).collect(),
                on: a.on.iter().filter_map(|s| by_name(s)).collect(),
                link_base: a.link_base.clone(),
                timeout: a.timeout,
                max_attempts: a.max_attempts,
                retry_max: a.retry_max,
            });
        }
        Ok(Actions { actions })
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.id == id)
    }

    /// The (action id, body) of every action `event` triggers.
    pub fn bodies_for(&self, event: &IncidentEvent) -> Vec<(String, String)> {
        self.actions
            .iter()
            .filter(|a| a.on.contains(&event.state))
            .filter(|a| a.kinds.is_empty() || a.kinds.contains(&event.kind))
            .map(|a| (a.id.clone(), body(a, event)))
            .collect()
    }
}

/// The value of a snake_case-named enum (a kind, an event state) named `name`.
fn by_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.into())).ok()
}

/// The kind's name for staff.
fn kind_zh(kind: Kind) -> &'static str {
    match kind {
        Kind::IllegalParking => "违章停车",
        Kind::FlyWireCharging => "飞线充电",
        Kind::Crowding => "人员聚集",
        Kind::CameraOffline => "摄像头离线",
        Kind::TwoWheelerInElevator => "电动车进电梯",
        Kind::Intrusion => "区域闯入",
        Kind::WrongWayEntry => "违规通行",
    }
}

fn state_zh(state: EventState) -> &'static str {
    match state {
        EventState::Opened => "新事件",
        EventState::Updated => "更新",
        EventState::Closed => "已结束",
        EventState::Reviewed => "已审核",
    }
}

/// The body the action posts for `event`.
fn body(action: &Action, event: &IncidentEvent) -> String {
    if action.format == ActionFormat::Json {
        return serde_json::to_string(event).unwrap_or_default();
    }
    let title = format!("【{}】{}", kind_zh(event.kind), state_zh(event.state));
    let mut text = format!(
        "### {title}\n{}\n> 摄像头：{}\n> 时间：{}\n> 类别：{} / {}",
        event.description,
        event.camera.name,
        event.event_at,
        event.category.major.name,
        event.category.minor.name
    );
    if let Some(base) = &action.link_base {
        text.push_str(&format!(
            "\n\n[查看截图]({}/api/incidents/{}/snapshot.jpg)",
            base.trim_end_matches('/'),
            event.incident_id
        ));
    }
    let message = match action.format {
        // https://developer.work.weixin.qq.com/document/path/91770 (markdown)
        ActionFormat::Wecom => serde_json::json!({
            "msgtype": "markdown",
            "markdown": { "content": text },
        }),
        // https://open.dingtalk.com/document/robots/custom-robot-access (markdown)
        _ => serde_json::json!({
            "msgtype": "markdown",
            "markdown": { "title": title, "text": text },
        }),
    };
    message.to_string()
}

/// How long to wait before attempt `attempts + 1`: 1 s, doubling, at most `max`.
pub fn backoff(attempts: u32, max: Duration) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    Duration::from_secs(1 << exp).min(max)
}

/// Posts what the store's action outbox holds, on its own thread.
pub struct ActionSender {
    stop: Arc<AtomicBool>,
    wake: crossbeam_channel::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ActionSender {
    pub fn start(
        store: Handle,
        actions: Arc<Actions>,
        wake: (
            crossbeam_channel::Sender<()>,
            crossbeam_channel::Receiver<()>,
        ),
    ) -> std::io::Result<ActionSender> {
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = wake;
        let thread = std::thread::Builder::new().name("actions".into()).spawn({
            let stop = Arc::clone(&stop);
            move || send_loop(&store, &actions, &receiver, &stop)
        })?;
        Ok(ActionSender {
            stop,
            wake: sender,
            thread,
        })
    }

    /// Stops after the POST in flight; what is left waits in the store.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.try_send(());
        let _ = self.thread.join();
    }
}

fn send_loop(
    store: &Handle,
    actions: &Actions,
    wake: &crossbeam_channel::Receiver<()>,
    stop: &AtomicBool,
) {
    let agents: Vec<(String, ureq::Agent)> = actions
        .actions
        .iter()
        .map(|a| {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(a.timeout))
                .http_status_as_error(false)
                .build()
                .new_agent();
            (a.id.clone(), agent)
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        let now = chrono::Utc::now().timestamp_micros();
        let due = match store.due_actions(now, 16) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!("cannot read the action outbox: {e}");
                let _ = wake.recv_timeout(Duration::from_secs(5));
                continue;
            }
        };
        if due.is_empty() {
            let _ = wake.recv_timeout(Duration::from_secs(1));
            continue;
        }
        for row in due {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let outcome = match (
                actions.get(&row.action_id),
                agents.iter().find(|(id, _)| *id == row.action_id),
            ) {
                (Some(action), Some((_, agent))) => post(agent, action, &row),
                _ => Err("the action is no longer configured".to_string()),
            };
            let action = actions.get(&row.action_id);
            let max = action.map_or(1, |a| a.max_attempts);
            let retry_max = action.map_or(Duration::from_secs(300), |a| a.retry_max);
            let shown = action.map_or("", |a| a.shown_url.as_str());
            let written = match outcome {
                Ok(()) => store.action_delivered(row.id),
                Err(e) if row.attempts + 1 >= max => {
                    // Logged once the row says so: whoever reads the log and then the
                    // outbox sees the same attempts.
                    let written = store.action_given_up(row.id, &e);
                    tracing::error!(action = %row.action_id, url = %shown, event = %row.event_id, attempts = row.attempts + 1, "action given up: {e}");
                    written
                }
                Err(e) => {
                    let attempts = row.attempts + 1;
                    if attempts == 1 {
                        tracing::warn!(action = %row.action_id, url = %shown, "action not delivered, retrying with backoff: {e}");
                    }
                    let next = now + backoff(attempts, retry_max).as_micros() as i64;
                    store.action_retry(row.id, attempts, next, &e)
                }
            };
            if let Err(e) = written {
                tracing::error!("cannot update the action outbox: {e}");
            }
        }
    }
}

/// One POST; `Err` with a reason that never holds the key.
fn post(agent: &ureq::Agent, action: &Action, row: &DueAction) -> Result<(), String> {
    let started = std::time::Instant::now();
    let result = agent
        .post(&action.url)
        .header("Content-Type", "application/json; charset=utf-8")
        .send(row.body.as_bytes());
    let redact = |text: String| {
        if action.url == action.shown_url {
            text
        } else {
            text.replace(&action.url, &action.shown_url)
        }
    };
    match result {
        Ok(response) if response.status().is_success() => {
            tracing::info!(action = %action.id, event = %row.event_id, ms = started.elapsed().as_millis() as u64, "action delivered");
            Ok(())
        }
        Ok(response) => Err(format!("answered HTTP {}", response.status())),
        Err(e) => Err(redact(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(actions: &str) -> Config {
        let text = format!(
            "[site]\nid = \"unit\"\ngrid_code = \"440305001001\"\n{actions}\n[[cameras]]\nid = \"lift\"\nurl = \"rtsp://10.0.0.2/stream1\"\n"
        );
        Config::parse(&text, Path::new("/etc/gridwatch/config.toml")).unwrap()
    }

    fn event(kind: Kind, state: EventState) -> IncidentEvent {
        let text = include_str!("../../docs/events.md");
        let block = text
            .split("```json")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap();
        let mut event: IncidentEvent = serde_json::from_str(block).unwrap();
        event.kind = kind;
        event.state = state;
        event
    }

    #[test]
    fn actions_match_kinds_and_states() {
        let c = config(
            "[[actions]]\nid = \"relay\"\nurl = \"http://127.0.0.1:9/hold\"\nkinds = [\"two_wheeler_in_elevator\"]\non = [\"opened\", \"closed\"]\n",
        );
        let actions = Actions::from_config(&c).unwrap();
        let lift = event(Kind::TwoWheelerInElevator, EventState::Opened);
        let bodies = actions.bodies_for(&lift);
        assert_eq!(bodies.len(), 1);
        let posted: IncidentEvent = serde_json::from_str(&bodies[0].1).unwrap();
        assert_eq!(
            posted.event_id, lift.event_id,
            "the event itself, schema v1"
        );
        assert!(
            actions
                .bodies_for(&event(Kind::TwoWheelerInElevator, EventState::Updated))
                .is_empty()
        );
        assert!(
            actions
                .bodies_for(&event(Kind::IllegalParking, EventState::Opened))
                .is_empty()
        );
    }

    #[test]
    fn robot_messages_follow_the_wecom_and_dingtalk_markdown_formats() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("robot.key");
        std::fs::write(&key, "s3cr3t\n").unwrap();
        let c = config(&format!(
            "[[actions]]\nid = \"wecom\"\nurl = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={{key}}\"\nkey_file = \"{key}\"\nformat = \"wecom\"\nlink_base = \"http://192.168.1.10:8080/\"\n\n[[actions]]\nid = \"ding\"\nurl = \"https://oapi.dingtalk.com/robot/send?access_token={{key}}\"\nkey_file = \"{key}\"\nformat = \"dingtalk\"\n",
            key = key.display()
        ));
        let actions = Actions::from_config(&c).unwrap();
        let wecom = actions.get("wecom").unwrap();
        assert!(wecom.url.ends_with("key=s3cr3t"));
        assert!(wecom.shown_url.ends_with("key={key}"), "logs never show it");
        let e = event(Kind::IllegalParking, EventState::Opened);
        let bodies = actions.bodies_for(&e);
        let w: serde_json::Value = serde_json::from_str(&bodies[0].1).unwrap();
        assert_eq!(w["msgtype"], "markdown");
        let content = w["markdown"]["content"].as_str().unwrap();
        assert!(content.starts_with("### 【违章停车】新事件\n"), "{content}");
        assert!(content.contains(&e.description) && content.contains(&e.camera.name));
        assert!(content.contains(&format!(
            "(http://192.168.1.10:8080/api/incidents/{}/snapshot.jpg)",
            e.incident_id
        )));
        let d: serde_json::Value = serde_json::from_str(&bodies[1].1).unwrap();
        assert_eq!(d["msgtype"], "markdown");
        assert_eq!(d["markdown"]["title"], "【违章停车】新事件");
        assert!(
            d["markdown"]["text"]
                .as_str()
                .unwrap()
                .contains(&e.event_at)
        );
        assert!(!bodies[0].1.contains("s3cr3t") && !bodies[1].1.contains("s3cr3t"));
    }

    #[test]
    fn a_missing_key_file_is_one_clear_error() {
        let c = config(
            "[[actions]]\nid = \"wecom\"\nurl = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={key}\"\nkey_file = \"/nonexistent/wecom.key\"\n",
        );
        let err = Actions::from_config(&c).unwrap_err().to_string();
        assert!(
            err.starts_with("action wecom: cannot read its key from /nonexistent/wecom.key"),
            "{err}"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(1, max), Duration::from_secs(1));
        assert_eq!(backoff(2, max), Duration::from_secs(2));
        assert_eq!(backoff(5, max), Duration::from_secs(16));
        assert_eq!(backoff(12, max), max);
        assert_eq!(backoff(40, max), max);
    }
}
