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

/// The request `id` of a payload, read leniently, so that the answer to a command that
/// fails validation still carries the id the platform matches answers by. `None` for
/// payloads over the size limit (never parsed), non-objects and ids that are not strings.
pub fn request_id(payload: &[u8]) -> Option<String> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    match serde_json::from_slice::<serde_json::Value>(payload).ok()? {
        serde_json::Value::Object(mut fields) => match fields.remove("id")? {
            serde_json::Value::String(id) if id.chars().count() <= 128 => Some(id),
            _ => None,
        },
        _ => None,
    }
}

/// Why a command was refused; the text goes back in its answer on `cmd/result`, one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("payload is not UTF-8")]
    NotUtf8,
    /// Not JSON, or not the command's fields (serde's message, on one line).
    #[error("{0}")]
    BadJson(String),
    #[error("payload must be a JSON object")]
    NotAnObject,
    /// A field with a value out of its bounds.
    #[error("{0}")]
    BadField(&'static str),
    #[error("unknown command `{0}` (known: ping, review)")]
    Unknown(String),
}

/// Parses the command named by the last topic level.
pub fn parse(name: &str, payload: &[u8]) -> Result<Command, CommandError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(CommandError::TooLarge(payload.len()));
    }
    let text = std::str::from_utf8(payload).map_err(|_| CommandError::NotUtf8)?;
    let one_line = |e: serde_json::Error| CommandError::BadJson(e.to_string().replace('\n', " "));
    // An empty ping is allowed (no id to echo); anything else must be one JSON object:
    // serde would otherwise read `[]` or `["x"]` as a struct written as a sequence.
    if name == "ping" && text.trim().is_empty() {
        return Ok(Command::Ping(Ping { id: None }));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(one_line)?;
    if !value.is_object() {
        return Err(CommandError::NotAnObject);
    }
    match name {
        "ping" => Ok(Command::Ping(
            serde_json::from_value(value).map_err(one_line)?,
        )),
        "review" => {
            let review: ReviewCommand = serde_json::from_value(value).map_err(one_line)?;
            if review.incident_id.trim().is_empty() || review.incident_id.len() > 64 {
                return Err(CommandError::BadField("incident_id must be a non-empty id"));
            }
            if review.reviewer.trim().is_empty() || review.reviewer.chars().count() > 64 {
                return Err(CommandError::BadField(
                    "reviewer must be 1 to 64 characters",
                ));
            }
            if review.note.chars().count() > 2000 {
                return Err(CommandError::BadField("note is over 2000 characters"));
            }
            Ok(Command::Review(review))
        }
        other => Err(CommandError::Unknown(other.to_string())),
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
        let err = |name: &str, payload: &[u8]| parse(name, payload).unwrap_err().to_string();
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
        for not_an_object in [&b"[]"[..], b"[\"r1\"]", b"\"r1\"", b"42", b"null"] {
            assert!(
                err("ping", not_an_object).contains("JSON object"),
                "{not_an_object:?}"
            );
            assert!(err("review", not_an_object).contains("JSON object"));
        }
    }

    #[test]
    fn the_request_id_is_found_even_when_the_command_is_invalid() {
        let cases: [&[u8]; 5] = [
            br#"{"id":"r3","incident_id":"x","verdict":"maybe","reviewer":"a"}"#,
            br#"{"id":"r3","incident_id":1,"verdict":"confirmed","reviewer":"a"}"#,
            br#"{"id":"r3","incident_id":"x","verdict":"confirmed","reviewer":""}"#,
            br#"{"id":"r3","incident_id":"x","verdict":"confirmed","reviewer":"a","admin":true}"#,
            br#"{"id":"r3","extra":1}"#,
        ];
        for payload in cases {
            assert_eq!(request_id(payload).as_deref(), Some("r3"));
        }
        assert_eq!(request_id(b"[]"), None);
        assert_eq!(request_id(br#"{"id":7}"#), None);
        assert_eq!(request_id(b"{not json"), None);
        let mut big = br#"{"id":"r9","note":""#.to_vec();
        big.resize(MAX_PAYLOAD + 10, b'x');
        assert_eq!(request_id(&big), None);
    }
}
