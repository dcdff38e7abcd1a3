//! zh-CN descriptions of incidents, generated from the facts, in the style of a grid
//! worker's report: where, what, for how long.

use super::EventState;
use crate::rules::{Kind, RuleEvent, Signal};

/// "45 秒", "4 分钟", "1 小时 5 分钟".
pub fn duration_zh(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    if total < 60 {
        format!("{total} 秒")
    } else if total < 3600 {
        format!("{} 分钟", total / 60)
    } else {
        let (h, m) = (total / 3600, (total % 3600) / 60);
        if m == 0 {
            format!("{h} 小时")
        } else {
            format!("{h} 小时 {m} 分钟")
        }
    }
}

/// What the incident's first object is, for staff: `person` and `vehicle` in the words
/// that fit the kind of incident (人员 or 行人, 车辆 or 机动车).
fn object_zh(change: &RuleEvent, person: &'static str, vehicle: &'static str) -> &'static str {
    match change.objects.first().map(|o| &*o.label) {
        Some("person") => person,
        Some("bicycle" | "motorcycle") => "两轮车",
        Some("car" | "bus" | "truck") => vehicle,
        _ => "目标",
    }
}

pub fn describe(
    change: &RuleEvent,
    state: EventState,
    camera: &str,
    zone: Option<&str>,
    duration_s: f64,
    density_per_m2: Option<f32>,
) -> String {
    let place = zone.unwrap_or(camera);
    let duration = duration_zh(duration_s);
    let closed = state == EventState::Closed;
    match change.kind {
        Kind::IllegalParking => {
            let label = change.objects.first().map(|o| &*o.label);
            let what = match label {
                Some("motorcycle") => "摩托车",
                Some("bus") => "大客车",
                Some("truck") => "货车",
                _ => "机动车",
            };
            let tail = if closed { "，已驶离" } else { "" };
            format!("{place}：{what}停留 {duration}{tail}")
        }
        Kind::FlyWireCharging => {
            let cable = change.signals.contains(&Signal::CableDetected);
            let head = if cable {
                "电动自行车飞线充电（检测到充电线）"
            } else {
                "疑似电动自行车飞线充电"
            };
            let tail = if closed { "，车辆已移走" } else { "" };
            format!("{place}：{head}，停放 {duration}{tail}")
        }
        Kind::Crowding => {
            let density = density_per_m2
                .map(|d| format!("，{d:.2} 人/平方米"))
                .unwrap_or_default();
            if closed {
                format!(
                    "{place}：人员聚集已散去，峰值 {} 人，持续 {duration}",
                    change.peak_count
                )
            } else {
                format!(
                    "{place}：人员聚集，当前 {} 人（峰值 {} 人{density}），持续 {duration}",
                    change.count, change.peak_count
                )
            }
        }
        Kind::TwoWheelerInElevator => {
            if closed {
                format!("{place}：电动自行车已离开电梯，停留 {duration}")
            } else {
                format!("{place}：电动自行车进入电梯，已停留 {duration}，请劝离")
            }
        }
        Kind::Intrusion => {
            let what = object_zh(change, "人员", "车辆");
            if closed {
                format!("{place}：闯入的{what}已离开，停留 {duration}")
            } else {
                format!("{place}：{what}闯入，已停留 {duration}")
            }
        }
        Kind::WrongWayEntry => {
            let what = object_zh(change, "行人", "机动车");
            format!("{place}：{what}违规通行（禁止方向）")
        }
        Kind::CameraOffline => {
            if closed {
                format!("{camera}：摄像头已恢复在线，离线 {duration}")
            } else {
                format!("{camera}：摄像头离线 {duration}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::BBox;
    use crate::rules::{ObjectRef, Transition};
    use std::sync::Arc;

    fn change(kind: Kind, label: &str, signals: Vec<Signal>) -> RuleEvent {
        RuleEvent {
            kind,
            zone: Some(0),
            key: (0, 0),
            transition: Transition::Open,
            at_us: 0,
            started_at_us: 0,
            ended_at_us: None,
            objects: vec![ObjectRef {
                track_id: 1,
                label: Arc::from(label),
                score: 0.8,
                bbox: BBox::default(),
            }],
            count: 12,
            peak_count: 15,
            confidence: 0.8,
            confirmed: true,
            signals,
            best_at_us: 0,
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_zh(45.0), "45 秒");
        assert_eq!(duration_zh(240.4), "4 分钟");
        assert_eq!(duration_zh(3900.0), "1 小时 5 分钟");
        assert_eq!(duration_zh(7200.0), "2 小时");
    }

    #[test]
    fn parking_and_charging_and_crowding() {
        let c = change(Kind::IllegalParking, "car", vec![]);
        assert_eq!(
            describe(
                &c,
                EventState::Opened,
                "东门",
                Some("3号楼东侧消防通道"),
                240.0,
                None
            ),
            "3号楼东侧消防通道：机动车停留 4 分钟"
        );
        assert_eq!(
            describe(
                &c,
                EventState::Closed,
                "东门",
                Some("消防通道"),
                300.0,
                None
            ),
            "消防通道：机动车停留 5 分钟，已驶离"
        );
        let c = change(
            Kind::FlyWireCharging,
            "bicycle",
            vec![Signal::StationaryTwoWheeler],
        );
        assert_eq!(
            describe(
                &c,
                EventState::Opened,
                "楼道",
                Some("2单元楼道"),
                125.0,
                None
            ),
            "2单元楼道：疑似电动自行车飞线充电，停放 2 分钟"
        );
        let c = change(
            Kind::FlyWireCharging,
            "bicycle",
            vec![Signal::CableDetected],
        );
        assert!(
            describe(&c, EventState::Updated, "楼道", None, 125.0, None).contains("检测到充电线")
        );
        let c = change(Kind::Crowding, "person", vec![]);
        assert_eq!(
            describe(
                &c,
                EventState::Updated,
                "广场",
                Some("中心广场"),
                90.0,
                Some(0.12)
            ),
            "中心广场：人员聚集，当前 12 人（峰值 15 人，0.12 人/平方米），持续 1 分钟"
        );
        let c = change(Kind::CameraOffline, "", vec![]);
        assert_eq!(
            describe(&c, EventState::Opened, "东门出入口", None, 60.0, None),
            "东门出入口：摄像头离线 1 分钟"
        );
    }
}
