//! The incident kinds: the vocabulary the config (actions by kind), the rules, the
//! incidents and the statistics share, so it sits below all of them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    IllegalParking,
    FlyWireCharging,
    Crowding,
    CameraOffline,
    TwoWheelerInElevator,
    Intrusion,
    WrongWayEntry,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IllegalParking => "illegal_parking",
            Kind::FlyWireCharging => "fly_wire_charging",
            Kind::Crowding => "crowding",
            Kind::CameraOffline => "camera_offline",
            Kind::TwoWheelerInElevator => "two_wheeler_in_elevator",
            Kind::Intrusion => "intrusion",
            Kind::WrongWayEntry => "wrong_way_entry",
        }
    }
}
