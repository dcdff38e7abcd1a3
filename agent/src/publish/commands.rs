//! Commands the platform sends on `<prefix>/cmd/<name>`, parsed strictly: unknown commands,
//! unknown fields, wrong types and oversized payloads are rejected with a reason, never
//! acted on and never a crash.

use serde::{Deserialize, Serialize};

use crate::incidents::Verdict;

/// Larger payloads are refused before parsing.
pub const MAX_PAYLOAD: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Echoed in the result so the platform can match it.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewCommand {
    #[serde(default)]
    pub id: Option<String>,
    pub incident_id: String,
    pub verdict: Verdict,
    pub reviewer: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Ping(Ping),
    Review(ReviewCommand),
}

impl Command {
    pub fn id(&self) -> Option<&str> {
        match self {
            Command::Ping(p) => p.id.as_deref(),
            Command::Review(r) => r.id.as_deref(),
        }
    }
}

/// The answer published on `<prefix>/cmd/result`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommandResult {
    pub command: String,
    pub id: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    /// For a review: the `reviewed` event's id.
    pub event_id: Option<String>,
}

/// Parses the command named by the last topic level. Errors say what is wrong, in one line.
pub fn parse(name: &str, payload: &[u8]) -> Result<Command, String> {
    if payload.len() > MAX_PAYLOAD {
        return Err(format!(
            "payload of {} bytes is over the {MAX_PAYLOAD}-byte limit",
            payload.len()
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8".to_string())?;
    let one_line = |e: serde_json::Error| e.to_string().replace('\n', " ");
    match name {
        "ping" => {
            let ping = if text.trim().is_empty() {
                Ping { id: None }
            } else {
                serde_json::from_str(text).map_err(one_line)?
            };
            Ok(Command::Ping(ping))
        }
        "review" => {
            let review: ReviewCommand = serde_json::from_str(text).map_err(one_line)?;
            if review.incident_id.trim().is_empty() || review.incident_id.len() > 64 {
                return Err("incident_id must be a non-empty id".into());
            }
            if review.reviewer.trim().is_empty() || review.reviewer.chars().count() > 64 {
                return Err("reviewer must be 1 to 64 characters".into());
            }
            if review.note.chars().count() > 2000 {
                return Err("note is over 2000 characters".into());
            }
            Ok(Command::Review(review))
        }
        other => Err(format!("unknown command `{other}` (known: ping, review)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_commands() {
        assert_eq!(
            parse("ping", b"").unwrap(),
            Command::Ping(Ping { id: None })
        );
        assert_eq!(parse("ping", br#"{"id":"r1"}"#).unwrap().id(), Some("r1"));
        let r = parse(
            "review",
            r#"{"incident_id":"0191","verdict":"dismissed","reviewer":"王","note":"有车证"}"#
                .as_bytes(),
        )
        .unwrap();
        match r {
            Command::Review(r) => {
                assert_eq!(r.verdict, Verdict::Dismissed);
                assert_eq!(r.note, "有车证");
            }
            _ => panic!("not a review"),
        }
    }

    #[test]
    fn hostile_payloads_are_rejected_with_a_reason() {
        let err = |name: &str, payload: &[u8]| parse(name, payload).unwrap_err();
        assert!(err("review", b"{not json").contains("key must be a string"));
        assert!(
            err(
                "review",
                br#"{"incident_id":1,"verdict":"confirmed","reviewer":"a"}"#
            )
            .contains("invalid type")
        );
        assert!(
            err(
                "review",
                br#"{"incident_id":"x","verdict":"maybe","reviewer":"a"}"#
            )
            .contains("unknown variant")
        );
        assert!(
            err(
                "review",
                br#"{"incident_id":"x","verdict":"confirmed","reviewer":"a","admin":true}"#
            )
            .contains("unknown field")
        );
        assert!(
            err(
                "review",
                br#"{"incident_id":"x","verdict":"confirmed","reviewer":""}"#
            )
            .contains("reviewer")
        );
        assert!(err("review", &vec![b' '; MAX_PAYLOAD + 1]).contains("over the"));
        assert!(err("review", &[0xff, 0xfe]).contains("UTF-8"));
        assert!(err("reboot", b"{}").contains("unknown command"));
        assert!(!err("review", b"{\n\"a\"\n").contains('\n'));
    }
}
