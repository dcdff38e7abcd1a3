//! `[evidence]`: snapshots, clips and their retention.

use super::*;

/// Clips and snapshots for station review, and how much disk they may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    pub enabled: bool,
    /// Where clips and snapshots go; default `<data_dir>/evidence`. A box with a separate
    /// disk for recordings puts evidence there and keeps the database on the system disk.
    pub dir: Option<PathBuf>,
    /// Video kept before the moment an incident opens.
    #[serde(with = "humantime_serde")]
    pub pre_roll: Duration,
    /// Video recorded after it.
    #[serde(with = "humantime_serde")]
    pub post_roll: Duration,
    /// Most bytes evidence may use; None = no byte limit.
    pub quota_bytes: Option<u64>,
    /// Most of the filesystem (percent of its size) evidence may use.
    pub quota_percent: Option<f64>,
    /// Evidence older than this is deleted; None = kept until the quota needs the space.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// JPEG quality of snapshots, 1-100.
    pub jpeg_quality: u8,
    pub thumbnail_width: u32,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            enabled: true,
            dir: None,
            pre_roll: Duration::from_secs(10),
            post_roll: Duration::from_secs(20),
            quota_bytes: None,
            quota_percent: Some(50.0),
            max_age: Some(Duration::from_secs(90 * 86_400)),
            jpeg_quality: 85,
            thumbnail_width: 320,
        }
    }
}

impl EvidenceConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.quota_percent.is_some_and(|p| !(p > 0.0 && p <= 100.0)) {
            return fail(&["quota_percent"], "must be in (0, 100]");
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return fail(&["jpeg_quality"], "must be 1..=100");
        }
        if self.thumbnail_width < 16 {
            return fail(&["thumbnail_width"], "must be at least 16");
        }
        Ok(())
    }
}
