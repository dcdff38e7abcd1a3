//! Web stage: the HTTP API and the station's review page (axum).
//!
//! Every route but `/healthz` and the page itself needs the token: an
//! `Authorization: Bearer <token>` header (API clients) or the session cookie the login sets
//! (the page): a random session id kept server-side with its expiry, deleted at logout,
//! never the token itself. Failed logins are rate-limited per client address
//! (`sessions.rs`). Incident ids are checked against the UUID form before they reach the store,
//! and evidence files are served only from the evidence directory (canonicalised), so no
//! request can read another file. Clips are served with HTTP Range support for seeking.

mod cameras;
mod json;
mod sessions;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, FromRequest as _, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::FixedOffset;
use rand::Rng as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::config::{Config, WebConfig};
use crate::incidents::Verdict;
use crate::metrics::{CameraMetrics, Metrics};
use crate::publish::Delivery;
use crate::store::{ReviewRequest, StoreError};
use sessions::{Account, Role};

const PAGE: &str = include_str!("page.html");
/// The installer's console: cameras and the zone editor.
const CAMERAS_PAGE: &str = include_str!("cameras.html");
const COOKIE: &str = "gridwatch_session";

/// What the zone editor needs from the daemon: the config file it runs on, the model (to
/// check zones' labels as `check` does) and the reload flag (SIGHUP's).
pub struct ConfigEditing {
    pub file: Arc<crate::config_file::ConfigFile>,
    pub model: Arc<crate::model::ModelManifest>,
    pub reload: Arc<std::sync::atomic::AtomicBool>,
}

/// A reviewer account's secrets, read once at start.
struct ReviewerCredentials {
    account: Account,
    password: Option<String>,
    token: Option<String>,
}

/// The account the top-level `token_file` / `password_*` sign in as.
fn installer() -> Account {
    Account {
        name: "installer".into(),
        role: Role::Installer,
    }
}

pub struct WebState {
    /// The store (`delivery.store()`), the dismissal memory and the one review path.
    delivery: Delivery,
    metrics: Arc<Metrics>,
    token: String,
    password: Option<String>,
    /// Station staff: incidents and reviews only.
    reviewers: Vec<ReviewerCredentials>,
    data_dir: PathBuf,
    evidence_dir: PathBuf,
    /// The site's id, for the statistics.
    site: String,
    offset: FixedOffset,
    sessions: sessions::Sessions,
    limiter: sessions::LoginLimiter,
    login_failures: AtomicU64,
    logins_throttled: AtomicU64,
    camera_rates: cameras::RateMeter,
    editing: Option<ConfigEditing>,
}

/// The server's address and a way to stop it.
pub struct WebServer {
    pub address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebServer {
    pub fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the server on its own thread and runtime.
pub fn start(
    config: &Config,
    web: &WebConfig,
    delivery: Delivery,
    metrics: Arc<Metrics>,
    editing: Option<ConfigEditing>,
) -> anyhow::Result<WebServer> {
    let token = match web
        .token()
        .map_err(|message| config.error_naming_field(message))?
    {
        Some(t) => t,
        None => {
            let mut bytes = [0u8; 24];
            rand::rng().fill(&mut bytes);
            hex::encode(bytes)
        }
    };
    let password = web
        .password()
        .map_err(|message| config.error_naming_field(message))?;
    let mut reviewers = Vec::with_capacity(web.reviewers.len());
    for r in &web.reviewers {
        let credentials = ReviewerCredentials {
            account: Account {
                name: r.name.trim().to_string(),
                role: Role::Reviewer,
            },
            password: r.password().map_err(|m| config.error_naming_field(m))?,
            token: r.token().map_err(|m| config.error_naming_field(m))?,
        };
        // A secret shared by two accounts would sign in as whichever is checked first.
        let taken = |secret: &Option<String>| {
            secret.as_ref().is_some_and(|s| {
                Some(s) == password.as_ref()
                    || *s == token
                    || reviewers.iter().any(|o: &ReviewerCredentials| {
                        o.password.as_ref() == Some(s) || o.token.as_ref() == Some(s)
                    })
            })
        };
        if taken(&credentials.password) || taken(&credentials.token) {
            return Err(config.error_naming_field(format!(
                "web.reviewers `{}`: its password or token is also another account's; give each account its own",
                credentials.account.name
            ))
            .into());
        }
        reviewers.push(credentials);
    }
    if password.is_none() && web.token_file.is_none() {
        tracing::warn!(
            "web: neither web.password_file/password_env nor web.token_file is set; the API is unusable"
        );
    }
    let state = Arc::new(WebState {
        delivery,
        metrics,
        token,
        password,
        reviewers,
        data_dir: config.storage.data_dir.clone(),
        evidence_dir: config.evidence_dir(),
        site: config.site.id.clone(),
        offset: config.site.timezone,
        sessions: sessions::Sessions::default(),
        limiter: sessions::LoginLimiter::default(),
        login_failures: AtomicU64::new(0),
        logins_throttled: AtomicU64::new(0),
        camera_rates: cameras::RateMeter::default(),
        editing,
    });
    let listener = std::net::TcpListener::bind(&web.listen)
        .map_err(|e| anyhow::anyhow!("web: cannot listen on {}: {e}", web.listen))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return tracing::error!("web runtime: {e}"),
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("web listener: {e}"),
                };
                // The peer address reaches the login handler, which limits guesses per address.
                let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
                let served = axum::serve(listener, app).with_graceful_shutdown(async {
                    let _ = rx.await;
                });
                if let Err(e) = served.await {
                    tracing::error!("web server: {e}");
                }
            });
        })?;
    tracing::info!("review page at http://{address}/");
    Ok(WebServer {
        address,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

pub fn router(state: Arc<WebState>) -> Router {
    // Cameras and zones: the installer's account only.
    let installer_only = Router::new()
        .route("/api/cameras", get(cameras::list_cameras))
        .route("/api/cameras/{id}", get(cameras::get_camera))
        .route("/api/cameras/{id}/latest.jpg", get(cameras::latest_picture))
        .route(
            "/api/cameras/{id}/zones",
            axum::routing::put(cameras::put_zones),
        )
        .route_layer(middleware::from_fn(require_installer));
    let api = Router::new()
        .route("/api/incidents", get(list_incidents))
        .route("/api/incidents/{id}", get(get_incident))
        .route("/api/incidents/{id}/review", post(post_review))
        .route("/api/incidents/{id}/{file}", get(get_file))
        .route("/api/suppressions", get(list_suppressions))
        .route("/api/stats", get(stats::get_stats))
        .route("/api/stats.csv", get(stats::get_stats_csv))
        .route("/api/account", get(get_account))
        .route("/metrics", get(metrics))
        .merge(installer_only)
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/cameras", get(|| async { Html(CAMERAS_PAGE) }))
        .route("/healthz", get(healthz))
        .route("/assets/uplot.min.js", get(stats::uplot_js))
        .route("/assets/uplot.min.css", get(stats::uplot_css))
        .route("/assets/uplot.LICENSE.txt", get(stats::uplot_license))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .merge(api)
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Compares without an early exit, so response times do not leak the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The account a bearer token belongs to. Every account's token is compared (in constant
/// time each), so the answer's timing does not tell which accounts exist.
fn token_account(state: &WebState, token: &str) -> Option<Account> {
    let mut found = same(token, &state.token).then(installer);
    for r in &state.reviewers {
        if r.token.as_deref().is_some_and(|t| same(token, t)) {
            found = Some(r.account.clone());
        }
    }
    found
}

/// Every API route: a valid token or session, whose account goes into the request for the
/// routes that check roles.
async fn require_token(
    State(state): State<Arc<WebState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let now = std::time::Instant::now();
    let account = match (bearer, cookie_token(headers)) {
        (Some(token), _) => match token_account(&state, &token) {
            Some(account) => account,
            None => return error(StatusCode::UNAUTHORIZED, "wrong token"),
        },
        (None, Some(session)) => match state.sessions.account(&session, now) {
            Some(account) => account,
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "the session has expired or was logged out: log in again",
                );
            }
        },
        (None, None) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "log in or send Authorization: Bearer <token>",
            );
        }
    };
    request.extensions_mut().insert(account);
    next.run(request).await
}

/// Camera and zone routes: a reviewer's account gets 403.
async fn require_installer(request: Request, next: Next) -> Response {
    match request.extensions().get::<Account>() {
        Some(account) if account.role == Role::Installer => next.run(request).await,
        Some(account) => error(
            StatusCode::FORBIDDEN,
            format!(
                "the reviewer account {} may open incidents and reviews only; cameras and zones need the installer's account",
                account.name
            ),
        ),
        None => error(StatusCode::UNAUTHORIZED, "log in first"),
    }
}

async fn get_account(Extension(account): Extension<Account>) -> Response {
    Json(json!({ "name": account.name, "role": account.role })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    password: String,
}

async fn login(State(state): State<Arc<WebState>>, request: Request) -> Response {
    // Behind no proxy: the box's own server, so the peer is the client. Without connect info
    // (the router driven in-process) all attempts share one bucket.
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let now = std::time::Instant::now();
    if let sessions::Attempt::Wait(wait) = state.limiter.check(address, now) {
        state.logins_throttled.fetch_add(1, Ordering::Relaxed);
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many wrong passwords from {address}: try again in {seconds} s"),
        );
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let Json(login) = match Json::<Login>::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let mut account = state
        .password
        .as_deref()
        .is_some_and(|p| same(p, &login.password))
        .then(installer);
    for r in &state.reviewers {
        if r.password
            .as_deref()
            .is_some_and(|p| same(p, &login.password))
        {
            account = Some(r.account.clone());
        }
    }
    let any_password =
        state.password.is_some() || state.reviewers.iter().any(|r| r.password.is_some());
    match account {
        Some(account) => {
            state.limiter.succeeded(address);
            let body = json!({ "ok": true, "account": account.name, "role": account.role });
            let session = state.sessions.create(now, account);
            let cookie = format!(
                "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                sessions::SESSION_TTL.as_secs()
            );
            let mut response = Json(body).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        None if any_password => {
            state.login_failures.fetch_add(1, Ordering::Relaxed);
            if let Some(wait) = state.limiter.failed(address, now) {
                tracing::warn!(client = %address, wait_s = wait.as_secs(), "repeated wrong passwords at login; the address must wait");
            } else {
                tracing::info!(client = %address, "wrong password at login");
            }
            error(StatusCode::UNAUTHORIZED, "wrong password")
        }
        None => error(
            StatusCode::FORBIDDEN,
            "login is not configured (web.password_file)",
        ),
    }
}

async fn logout(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie_token(&headers) {
        state.sessions.remove(&session);
    }
    let mut response = Json(json!({ "ok": true })).into_response();
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn healthz(State(state): State<Arc<WebState>>) -> Response {
    let outbox = state.delivery.store().outbox_stats().unwrap_or_default();
    let store = state.metrics.store_health.report();
    // 503 while the database cannot write: events are only held in memory then, and a
    // monitor should see it.
    let code = if store.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Json(json!({
        "status": if store.ok { "ok" } else { "degraded" },
        "uptime_s": state.metrics.uptime_s().round(),
        "cameras": state.metrics.cameras().into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
        "outbox_depth": outbox.events,
        "store": store,
    }));
    (code, body).into_response()
}

/// UUID-shaped ids only: nothing else can reach a query or a path.
fn valid_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    camera: Option<String>,
    zone: Option<String>,
    /// RFC 3339 bounds on the opening time.
    from: Option<String>,
    to: Option<String>,
    /// pending, confirmed or dismissed.
    review: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

async fn list_incidents(
    State(state): State<Arc<WebState>>,
    Query(q): Query<ListQuery>,
) -> Response {
    let time = |t: &Option<String>| -> Result<Option<i64>, String> {
        t.as_ref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.timestamp_micros())
                    .map_err(|e| format!("bad time `{t}`: {e}"))
            })
            .transpose()
    };
    let (from, to) = match (time(&q.from), time(&q.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(review) = &q.review
        && !matches!(review.as_str(), "pending" | "confirmed" | "dismissed")
    {
        return error(
            StatusCode::BAD_REQUEST,
            "review must be pending, confirmed or dismissed",
        );
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0);
    match state
        .delivery
        .store()
        .list_incidents(&crate::store::IncidentFilter {
            state: q.state.as_deref(),
            kind: q.kind.as_deref(),
            camera: q.camera.as_deref(),
            zone: q.zone.as_deref(),
            from_us: from,
            to_us: to,
            review: q.review.as_deref(),
            limit,
            offset,
        }) {
        Ok((total, rows)) => {
            let items: Vec<Value> = rows.iter().map(json::incident_summary).collect();
            Json(json!({ "total": total, "limit": limit, "offset": offset, "items": items }))
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_incident(State(state): State<Arc<WebState>>, Path(id): Path<String>) -> Response {
    if !valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, "not an incident id");
    }
    let store = state.delivery.store();
    match (store.incident_row(&id), store.events_of(&id)) {
        (Ok(Some(row)), Ok(events)) => {
            Json(json!({ "incident": json::incident_summary(&row), "events": events }))
                .into_response()
        }
        (Ok(None), _) => error(StatusCode::NOT_FOUND, "no such incident"),
        (Err(e), _) | (_, Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    verdict: Verdict,
    /// Who reviewed, for the installer's account (a script acting for staff); a reviewer
    /// account's reviews are recorded under its own name.
    #[serde(default)]
    reviewer: String,
    #[serde(default)]
    note: String,
}

async fn post_review(
    State(state): State<Arc<WebState>>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    Json(mut body): Json<ReviewBody>,
) -> Response {
    if !valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, "not an incident id");
    }
    if account.role == Role::Reviewer {
        body.reviewer = account.name;
    }
    if body.reviewer.trim().is_empty()
        || body.reviewer.chars().count() > 64
        || body.note.chars().count() > 2000
    {
        return error(
            StatusCode::BAD_REQUEST,
            "reviewer must be 1-64 characters, note at most 2000",
        );
    }
    let request = ReviewRequest {
        incident_id: &id,
        verdict: body.verdict,
        reviewer: &body.reviewer,
        note: &body.note,
        at_us: chrono::Utc::now().timestamp_micros(),
    };
    match state.delivery.review(&request, state.offset) {
        Ok(event) => {
            tracing::info!(incident = %id, reviewer = %body.reviewer, "review stored");
            Json(event).into_response()
        }
        Err(StoreError::UnknownIncident(_)) => error(StatusCode::NOT_FOUND, "no such incident"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_file(
    State(state): State<Arc<WebState>>,
    Path((id, file)): Path<(String, String)>,
    request: Request,
) -> Response {
    if !valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, "not an incident id");
    }
    let kind = match file.as_str() {
        "snapshot.jpg" => "snapshot",
        "thumb.jpg" => "thumbnail",
        "clip.mp4" => "clip",
        _ => return error(StatusCode::NOT_FOUND, "no such file"),
    };
    let relative = match state.delivery.store().evidence_path(&id, kind) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "no such evidence (not made yet, or removed by retention)",
            );
        }
        _ => return error(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    };
    // Only files inside the evidence directory, whatever the database says.
    let root = match state.evidence_dir.canonicalize() {
        Ok(r) => r,
        Err(_) => return error(StatusCode::NOT_FOUND, "no evidence directory"),
    };
    let path = match state.data_dir.join(&relative).canonicalize() {
        Ok(p) if p.starts_with(&root) => p,
        _ => return error(StatusCode::NOT_FOUND, "no such file"),
    };
    // ServeFile answers Range requests (the video player seeks with them) and sets the
    // content type from the extension.
    match tower_http::services::ServeFile::new(&path)
        .oneshot(request)
        .await
    {
        Ok(response) => response.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list_suppressions(State(state): State<Arc<WebState>>) -> Response {
    let now = chrono::Utc::now().timestamp_micros();
    let items = state
        .delivery
        .suppressions()
        .map(|s| s.active(now))
        .unwrap_or_default();
    Json(json!({ "items": items })).into_response()
}

async fn metrics(State(state): State<Arc<WebState>>) -> Response {
    use std::fmt::Write as _;
    let m = &state.metrics;
    let mut out = String::new();
    let cameras = m.cameras();
    let mut per_camera = |name: &str, help: &str, value: fn(&CameraMetrics) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (id, c) in &cameras {
            let _ = writeln!(out, "{name}{{camera=\"{id}\"}} {}", value(c));
        }
    };
    per_camera(
        "gridwatch_frames_decoded_total",
        "Frames decoded, per camera.",
        |c| c.frames_in.load(Ordering::Relaxed),
    );
    per_camera(
        "gridwatch_frames_inferred_total",
        "Frames the detector ran on, per camera.",
        |c| c.frames_inferred.load(Ordering::Relaxed),
    );
    per_camera(
        "gridwatch_frames_dropped_total",
        "Frames dropped because inference was behind.",
        |c| c.frames_dropped.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP gridwatch_region_inferences_total Model inferences per camera and detection region (a frame with three moving regions costs three).\n# TYPE gridwatch_region_inferences_total counter"
    );
    for (id, c) in &cameras {
        let regions = c.regions.lock().map(|r| r.clone()).unwrap_or_default();
        for (region, counter) in regions.iter().zip(&c.region_inferences) {
            let _ = writeln!(
                out,
                "gridwatch_region_inferences_total{{camera=\"{id}\",region=\"{}\",stream=\"{}\",pixels=\"{}x{}\"}} {}",
                region.id,
                region.stream,
                region.width,
                region.height,
                counter.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP gridwatch_login_failures_total Logins refused for a wrong password.\n# TYPE gridwatch_login_failures_total counter\ngridwatch_login_failures_total {}\n# HELP gridwatch_logins_throttled_total Login attempts refused unread because their address had too many failures.\n# TYPE gridwatch_logins_throttled_total counter\ngridwatch_logins_throttled_total {}",
        state.login_failures.load(Ordering::Relaxed),
        state.logins_throttled.load(Ordering::Relaxed)
    );
    let store = m.store_health.report();
    let _ = writeln!(
        out,
        "# HELP gridwatch_store_ok Whether the database takes writes (0 while events are held in memory).\n# TYPE gridwatch_store_ok gauge\ngridwatch_store_ok {}\n# HELP gridwatch_store_write_failures_total Failed database writes of events or evidence.\n# TYPE gridwatch_store_write_failures_total counter\ngridwatch_store_write_failures_total {}\n# HELP gridwatch_store_held_events Events held in memory until the database takes writes.\n# TYPE gridwatch_store_held_events gauge\ngridwatch_store_held_events {}\n# HELP gridwatch_store_held_dropped_total Held events given up at the memory bound.\n# TYPE gridwatch_store_held_dropped_total counter\ngridwatch_store_held_dropped_total {}",
        u8::from(store.ok),
        store.write_failures_total,
        store.held_events,
        store.dropped_total
    );
    let (buckets, count, sum) = m.latency_histogram();
    let _ = writeln!(
        out,
        "# HELP gridwatch_inference_latency_seconds Inference latency.\n# TYPE gridwatch_inference_latency_seconds histogram"
    );
    for (bound, cumulative) in buckets {
        let le = if bound.is_infinite() {
            "+Inf".to_string()
        } else {
            format!("{}", bound / 1000.0)
        };
        let _ = writeln!(
            out,
            "gridwatch_inference_latency_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "gridwatch_inference_latency_seconds_sum {sum}\ngridwatch_inference_latency_seconds_count {count}"
    );
    {
        let store = state.delivery.store();
        let _ = writeln!(
            out,
            "# HELP gridwatch_incidents_total Incidents raised, by kind.\n# TYPE gridwatch_incidents_total counter"
        );
        for (kind, n) in store.incident_counts().unwrap_or_default() {
            let _ = writeln!(out, "gridwatch_incidents_total{{kind=\"{kind}\"}} {n}");
        }
        let outbox = store.outbox_stats().unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP gridwatch_outbox_events Events waiting for MQTT delivery.\n# TYPE gridwatch_outbox_events gauge\ngridwatch_outbox_events {}",
            outbox.events
        );
        let _ = writeln!(
            out,
            "# HELP gridwatch_outbox_dropped_total Events dropped by the outbox bound.\n# TYPE gridwatch_outbox_dropped_total counter\ngridwatch_outbox_dropped_total {}",
            outbox.dropped_total
        );
        let (waiting, given_up) = store.action_backlog().unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP gridwatch_actions_waiting Action POSTs queued, not delivered yet.\n# TYPE gridwatch_actions_waiting gauge\ngridwatch_actions_waiting {waiting}\n# HELP gridwatch_actions_given_up Action POSTs given up after max_attempts (kept in the store).\n# TYPE gridwatch_actions_given_up gauge\ngridwatch_actions_given_up {given_up}"
        );
        let crossings = store.crossing_counts(0, i64::MAX).unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP gridwatch_line_crossings_total Objects that crossed a counting line, by line, direction and class.\n# TYPE gridwatch_line_crossings_total counter"
        );
        for c in crossings {
            let _ = writeln!(
                out,
                "gridwatch_line_crossings_total{{camera=\"{}\",line=\"{}\",direction=\"{}\",class=\"{}\"}} {}",
                c.camera_id, c.line_id, c.direction, c.label, c.count
            );
        }
        let evidence: u64 = store
            .live_evidence()
            .map(|f| f.iter().map(|f| f.bytes).sum())
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "# HELP gridwatch_evidence_bytes Bytes of evidence files on disk.\n# TYPE gridwatch_evidence_bytes gauge\ngridwatch_evidence_bytes {evidence}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuid_shaped_ids_pass() {
        assert!(valid_id("01a20b48-14b8-7ec1-956a-7428ee286dc6"));
        assert!(!valid_id("../../etc/passwd"));
        assert!(!valid_id("01a20b48-14b8-7ec1-956a-7428ee286dc"));
        assert!(!valid_id("01a20b48x14b8-7ec1-956a-7428ee286dc6"));
        assert!(!valid_id("01a20b48-14b8-7ec1-956a-7428ee286d/."));
    }

    #[test]
    fn token_comparison_and_cookies() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; gridwatch_session=tok; b=2"),
        );
        assert_eq!(cookie_token(&headers).as_deref(), Some("tok"));
    }
}
