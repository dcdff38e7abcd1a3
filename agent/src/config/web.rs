//! `[web]`: the HTTP API, the review page and its accounts.

use super::*;

/// The station's review page and the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on, e.g. "0.0.0.0:8080" (LAN) or "127.0.0.1:8080".
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token for API clients (file, first line). Unset: a random one per start,
    /// usable only through the login.
    pub token_file: Option<PathBuf>,
    /// Password of the review page's login (file, first line, or an environment variable).
    /// These and `token_file` are the installer's account: everything, cameras and zones
    /// included.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Station staff's accounts: incidents and reviews only (403 on camera and zone routes).
    /// Their reviews are recorded under the account's name.
    #[serde(default)]
    pub reviewers: Vec<ReviewerAccount>,
}

/// A reviewer's account: a name and a password (file or environment variable) for the
/// page, and/or a token (file) for scripts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewerAccount {
    /// Shown in reviews, e.g. "王芳"; 1-64 characters, unique.
    pub name: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl ReviewerAccount {
    pub fn password(&self) -> Result<Option<String>, String> {
        secret(
            &self.password_file,
            &self.password_env,
            "web.reviewers.password",
        )
    }

    pub fn token(&self) -> Result<Option<String>, String> {
        self.token_file
            .as_deref()
            .map(|p| first_line(p, "web.reviewers.token_file"))
            .transpose()
            .map(|t| t.filter(|t| !t.is_empty()))
    }
}

/// A secret from the first line of a file, or an environment variable.
pub(super) fn secret(
    file: &Option<PathBuf>,
    env: &Option<String>,
    what: &str,
) -> Result<Option<String>, String> {
    if let Some(path) = file {
        return first_line(path, &format!("{what}_file")).map(Some);
    }
    if let Some(var) = env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| format!("{what}_env names {var}, which is not set"));
    }
    Ok(None)
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

pub(super) fn first_line(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().next().unwrap_or_default().trim().to_string())
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

impl WebConfig {
    pub fn token(&self) -> Result<Option<String>, String> {
        self.token_file
            .as_deref()
            .map(|p| first_line(p, "web.token_file"))
            .transpose()
            .map(|t| t.filter(|t| !t.is_empty()))
    }

    pub fn password(&self) -> Result<Option<String>, String> {
        secret(&self.password_file, &self.password_env, "web.password")
    }
}

impl WebConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return fail(
                &["listen"],
                format!("`{}` is not an address like 0.0.0.0:8080", self.listen),
            );
        }
        for (i, r) in self.reviewers.iter().enumerate() {
            let index = i.to_string();
            let at = |field: &'static str| ["reviewers", index.as_str(), field];
            let name = r.name.trim();
            if name.is_empty() || name.chars().count() > 64 {
                return fail(&at("name"), "must be 1-64 characters");
            }
            if self.reviewers[..i].iter().any(|o| o.name.trim() == name) {
                return fail(&at("name"), format!("`{name}` is used by another reviewer"));
            }
            if r.password_file.is_none() && r.password_env.is_none() && r.token_file.is_none() {
                return fail(
                    &at("name"),
                    "a reviewer needs password_file, password_env or token_file",
                );
            }
            if r.password_file.is_some() && r.password_env.is_some() {
                return fail(
                    &at("password_env"),
                    "give password_file or password_env, not both",
                );
            }
        }
        Ok(())
    }
}
