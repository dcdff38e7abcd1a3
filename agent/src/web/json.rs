//! The review page's JSON: what the HTTP API answers, built from the store's typed rows.
//! The URLs of the API are made here, where the routes are.

use serde_json::{Value, json};

use crate::store::IncidentRow;

/// The URL path of an incident's evidence file of `kind`, as routed by `web`.
pub fn evidence_url(incident_id: &str, kind: &str) -> String {
    let name = match kind {
        "snapshot" => "snapshot.jpg",
        "thumbnail" => "thumb.jpg",
        _ => "clip.mp4",
    };
    format!("/api/incidents/{incident_id}/{name}")
}

/// What the review page shows of one incident: its latest state, the review, the evidence
/// files still on disk (as API URLs).
pub fn incident_summary(row: &IncidentRow) -> Value {
    let event = &row.last_event;
    let url = |kind: &str| -> Value {
        if row.evidence_on_disk.contains(&kind) {
            evidence_url(&row.incident_id, kind).into()
        } else {
            Value::Null
        }
    };
    json!({
        "incident_id": row.incident_id,
        "kind": event["kind"],
        "state": event["state"],
        "status": event["status"],
        "camera": event["camera"],
        "zone": event["zone"],
        "category": event["category"],
        "description": event["description"],
        "started_at": event["started_at"],
        "opened_at": event["opened_at"],
        "closed_at": event["closed_at"],
        "duration_s": event["duration_s"],
        "count": event["count"],
        "peak_count": event["peak_count"],
        "confidence": event["confidence"],
        "objects": event["objects"],
        "signals": event["evidence"]["signals"],
        "evidence_error": event["evidence"]["error"],
        "review": row.review.as_ref().map(|r| json!({
            "verdict": r.verdict, "reviewer": r.reviewer, "note": r.note, "reviewed_at": r.reviewed_at,
        })),
        "snapshot_url": url("snapshot"),
        "thumbnail_url": url("thumbnail"),
        "clip_url": url("clip"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredReview;

    #[test]
    fn a_summary_links_only_the_evidence_still_on_disk_and_carries_the_review() {
        let row = IncidentRow {
            incident_id: "01a20b48-14b8-7ec1-956a-7428ee286dc6".into(),
            last_event: json!({
                "kind": "illegal_parking", "state": "updated", "camera": {"id": "gate"},
                "evidence": {"signals": ["stationary_vehicle"], "error": null},
            }),
            review: Some(StoredReview {
                verdict: "dismissed".into(),
                reviewer: Some("王芳".into()),
                note: None,
                reviewed_at: Some("2026-12-07T10:00:00.000+08:00".into()),
            }),
            evidence_on_disk: vec!["snapshot"],
        };
        let summary = incident_summary(&row);
        assert_eq!(
            summary["snapshot_url"],
            "/api/incidents/01a20b48-14b8-7ec1-956a-7428ee286dc6/snapshot.jpg"
        );
        assert_eq!(summary["thumbnail_url"], Value::Null);
        assert_eq!(summary["clip_url"], Value::Null);
        assert_eq!(summary["kind"], "illegal_parking");
        assert_eq!(summary["camera"]["id"], "gate");
        assert_eq!(summary["signals"][0], "stationary_vehicle");
        assert_eq!(summary["review"]["verdict"], "dismissed");
        assert_eq!(summary["review"]["reviewer"], "王芳");
        assert_eq!(
            evidence_url("x", "clip"),
            "/api/incidents/x/clip.mp4",
            "the route get_file serves"
        );
    }
}
