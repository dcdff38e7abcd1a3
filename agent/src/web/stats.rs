//! `GET /api/stats` and `GET /api/stats.csv`: the station's statistics (`crate::stats`),
//! for reviewers and the installer alike; and the chart library the review page draws them
//! with, embedded in the binary (agent/build.rs) and served without a login, as the page is.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{WebState, error};
use crate::stats::{self, StatsError, StatsQuery, Table};

const UPLOT_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uPlot.iife.min.js"));
const UPLOT_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uPlot.min.css"));
const UPLOT_LICENSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/LICENSE"));

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsParams {
    /// First local day, YYYY-MM-DD (default: 29 days before `to`).
    from: Option<String>,
    /// Last local day, YYYY-MM-DD (default: today).
    to: Option<String>,
    /// Comma-separated: day, camera, zone, kind (default: day,kind).
    group: Option<String>,
    /// CSV only: incidents (default) or crossings.
    table: Option<String>,
}

fn today(state: &WebState) -> chrono::NaiveDate {
    chrono::Utc::now().with_timezone(&state.offset).date_naive()
}

fn compute(state: &WebState, params: &StatsParams) -> Result<stats::Stats, StatsError> {
    let query = StatsQuery::parse(
        params.from.as_deref(),
        params.to.as_deref(),
        params.group.as_deref(),
        today(state),
    )?;
    // Its own read-only connection: a month of figures never holds the writers' lock.
    let reader = crate::store::StatsReader::open(state.delivery.store().path())?;
    stats::compute(&reader, &state.site, state.offset, &query)
}

/// Computes off the web runtime's thread (a large store takes a while to count).
async fn compute_blocking(
    state: Arc<WebState>,
    params: StatsParams,
) -> Result<stats::Stats, StatsError> {
    tokio::task::spawn_blocking(move || compute(&state, &params))
        .await
        .map_err(|_| StatsError::Unavailable)?
}

fn refused(e: StatsError) -> Response {
    match e {
        StatsError::Store(_) | StatsError::Encode(_) | StatsError::Unavailable => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        _ => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

pub(super) async fn get_stats(
    State(state): State<Arc<WebState>>,
    Query(params): Query<StatsParams>,
) -> Response {
    if params.table.is_some() {
        return error(StatusCode::BAD_REQUEST, "`table` is for /api/stats.csv");
    }
    match compute_blocking(state, params).await {
        Ok(stats) => Json(stats).into_response(),
        Err(e) => refused(e),
    }
}

pub(super) async fn get_stats_csv(
    State(state): State<Arc<WebState>>,
    Query(params): Query<StatsParams>,
) -> Response {
    let table = match Table::parse(params.table.as_deref()) {
        Ok(t) => t,
        Err(e) => return refused(e),
    };
    let body = match compute_blocking(state, params)
        .await
        .and_then(|s| Ok((stats::to_csv(&s, table)?, s)))
    {
        Ok((body, s)) => (
            body,
            format!(
                "gridwatch-{}-{}-{}-{}.csv",
                table.name(),
                s.site,
                s.from,
                s.to
            ),
        ),
        Err(e) => return refused(e),
    };
    // The site id is an ASCII identifier in topics; anything else is replaced in the name.
    let filename: String = body
        .1
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body.0,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn uplot_js() -> Response {
    asset("text/javascript; charset=utf-8", UPLOT_JS)
}

pub(super) async fn uplot_css() -> Response {
    asset("text/css; charset=utf-8", UPLOT_CSS)
}

pub(super) async fn uplot_license() -> Response {
    asset("text/plain; charset=utf-8", UPLOT_LICENSE)
}
