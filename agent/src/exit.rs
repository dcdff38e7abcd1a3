//! Exit codes and the one-line error report at the CLI boundary.
//!
//! Modules return typed errors; `main` wraps them in `anyhow` with context. The exit code is
//! decided here from the first typed error found in the chain, so every module keeps its own
//! error type and nobody has to thread exit codes through.

use std::fmt::Write as _;

use crate::source::SourceError;
use crate::{assets::AssetError, config::ConfigError, detect::DetectError, model::ModelError};

/// What went wrong, as the process reports it to scripts and service managers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Anything not classified below.
    Other = 1,
    /// Bad config or command-line usage.
    Usage = 2,
    /// Model file, manifest or ONNX Runtime library problem.
    Model = 3,
    /// Input media problem: missing, corrupt, unsupported.
    Input = 4,
}

impl ExitKind {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Classifies an error by the first typed error in its chain.
    pub fn of(err: &anyhow::Error) -> ExitKind {
        for cause in err.chain() {
            if cause.downcast_ref::<ConfigError>().is_some() {
                return ExitKind::Usage;
            }
            if cause.downcast_ref::<ModelError>().is_some()
                || cause.downcast_ref::<DetectError>().is_some()
                || cause.downcast_ref::<AssetError>().is_some()
            {
                return ExitKind::Model;
            }
            if cause.downcast_ref::<SourceError>().is_some() {
                return ExitKind::Input;
            }
        }
        ExitKind::Other
    }
}

/// Renders an error chain as a single line: `outer: inner: root cause`.
///
/// Libraries (ONNX Runtime in particular) sometimes put newlines into their messages; a log
/// line or a systemd status must stay one line, so whitespace runs are folded.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for (i, cause) in err.chain().enumerate() {
        let part = cause.to_string();
        // anyhow contexts often repeat the source's text; print each distinct part once.
        if i > 0 && text.contains(part.trim()) {
            continue;
        }
        if i > 0 {
            text.push_str(": ");
        }
        let _ = write!(text, "{part}");
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_folds_newlines_and_repeated_causes() {
        let inner = anyhow::anyhow!("Protobuf parsing failed\n  at line 3");
        let err = inner.context("loading model m.onnx");
        assert_eq!(
            one_line(&err),
            "loading model m.onnx: Protobuf parsing failed at line 3"
        );
    }

    #[test]
    fn exit_kind_of_untyped_error_is_other() {
        assert_eq!(ExitKind::of(&anyhow::anyhow!("boom")), ExitKind::Other);
    }
}
