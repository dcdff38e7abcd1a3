//! `[site]` and `[storage]`.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Stable identifier of this box's site (compound), used in topics and event ids.
    pub id: String,
    /// Human name of the site, e.g. the compound's name.
    #[serde(default)]
    pub name: String,
    /// The grid code (网格编码) the platform files this site's incidents under.
    pub grid_code: String,
    /// UTC offset of the site's local time, e.g. "+08:00". Used for schedules and for the
    /// offset written in event times.
    #[serde(default = "default_timezone", deserialize_with = "de_offset")]
    pub timezone: FixedOffset,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Where the database, evidence and downloaded models live. Relative paths are taken
    /// from the config file's directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Free space kept on the filesystems of `data_dir` and of the evidence directory, so
    /// the database and its outbox are never starved: evidence is never written into it,
    /// and retention deletes evidence (reviewed first, then oldest) to restore it when
    /// anything else eats into it. Default 128 MiB.
    #[serde(default = "default_reserve_bytes")]
    pub reserve_bytes: u64,
}

fn default_reserve_bytes() -> u64 {
    128 << 20
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: default_data_dir(),
            reserve_bytes: default_reserve_bytes(),
        }
    }
}

fn default_timezone() -> FixedOffset {
    // China Standard Time; every city the product targets is on it.
    FixedOffset::east_opt(8 * 3600).expect("constant offset is in range")
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/gridwatch")
}

fn de_offset<'de, D: serde::Deserializer<'de>>(de: D) -> Result<FixedOffset, D::Error> {
    let text = String::deserialize(de)?;
    parse_offset(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "`{text}` is not a UTC offset like \"+08:00\" or \"-03:30\""
        ))
    })
}

/// Parses "+08:00", "-0330", "Z" or "UTC".
pub fn parse_offset(text: &str) -> Option<FixedOffset> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl SiteConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if !is_identifier(&self.id) {
            return fail(
                &["id"],
                format!(
                    "`{}` must be letters, digits, `-` or `_` (it is used in MQTT topics)",
                    self.id
                ),
            );
        }
        Ok(())
    }
}
