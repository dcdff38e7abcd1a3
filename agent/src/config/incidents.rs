//! `[incidents]` and `[categories]`: the lifecycle timing and the platform's codes.

use super::*;

/// Incident lifecycle settings shared by all rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// An open incident sends an `updated` event at most this often (and on state changes).
    #[serde(with = "humantime_serde")]
    pub update_every: Duration,
    /// After an incident closes, the same zone and kind (at the same place, for objects)
    /// raise no new incident for this long: one car coming and going is not ten incidents.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// A dismissed incident suppresses new ones of the same kind in the same zone for an
    /// object at the same place (a car with a parking permit) for this long.
    #[serde(with = "humantime_serde")]
    pub dismissal_memory: Duration,
    /// "Same place": box overlap (IoU) with the dismissed incident's object.
    pub dismissal_iou: f32,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            update_every: Duration::from_secs(60),
            cooldown: Duration::from_secs(120),
            dismissal_memory: Duration::from_secs(7 * 86_400),
            dismissal_iou: 0.5,
        }
    }
}

/// One level of the platform's category tree: its name and, when the platform has given
/// one, its code. gridwatch never invents codes.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CategoryLevel {
    pub name: String,
    #[serde(default)]
    pub code: Option<String>,
}

/// 大类 / 中类 / 小类 of one incident kind.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub major: CategoryLevel,
    pub minor: CategoryLevel,
    #[serde(default)]
    pub sub: Option<CategoryLevel>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CategoriesConfig {
    pub illegal_parking: Option<Category>,
    pub fly_wire_charging: Option<Category>,
    pub crowding: Option<Category>,
    pub camera_offline: Option<Category>,
    pub two_wheeler_in_elevator: Option<Category>,
    pub intrusion: Option<Category>,
    pub wrong_way_entry: Option<Category>,
}

impl IncidentsConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.update_every < Duration::from_secs(1) {
            return fail(
                &["update_every"],
                "must be at least 1s (an open incident would send an update every frame)",
            );
        }
        Ok(())
    }
}
