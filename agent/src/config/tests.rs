use super::*;

const MINIMAL: &str = r#"
[site]
id = "demo"
grid_code = "440305001001"

[[cameras]]
id = "gate"
url = "rtsp://10.0.0.2/stream1"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/gridwatch/config.toml"))
}

#[test]
fn minimal_config_gets_defaults() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.detector.model, "yolox_nano");
    assert_eq!(cfg.detector.confidence, 0.3);
    assert_eq!(cfg.cameras[0].detect_fps, 5.0);
    assert_eq!(cfg.cameras[0].rtsp_transport, RtspTransport::Tcp);
    assert_eq!(cfg.site.timezone.local_minus_utc(), 8 * 3600);
    assert_eq!(cfg.storage.data_dir, PathBuf::from("/var/lib/gridwatch"));
}

#[test]
fn relative_paths_follow_the_config_file() {
    let text = format!("{MINIMAL}\n[storage]\ndata_dir = \"data\"\n");
    let cfg = parse(&text).unwrap();
    assert_eq!(cfg.storage.data_dir, PathBuf::from("/etc/gridwatch/data"));
}

#[test]
fn unknown_key_names_file_line_column_and_field() {
    let text = MINIMAL.replace("url = ", "detct_fps = 3\nurl = ");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("/etc/gridwatch/config.toml:8:1:"),
        "got: {err}"
    );
    assert!(err.contains("unknown field `detct_fps`"), "got: {err}");
    assert!(err.contains("cameras[0]"), "got: {err}");
}

#[test]
fn actions_are_checked_with_their_place() {
    let action = |body: &str| format!("{MINIMAL}\n[[actions]]\nid = \"relay\"\n{body}");
    let ok = parse(&action("url = \"http://10.0.0.9/hold\"\n")).unwrap();
    assert_eq!(ok.actions[0].on, vec!["opened".to_string()]);
    assert_eq!(ok.actions[0].format, ActionFormat::Json);
    for (body, message) in [
        ("url = \"ftp://10.0.0.9/\"\n", "http:// or https://"),
        (
            "url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc\"\nkey_env = \"K\"\n",
            "{key}",
        ),
        (
            "url = \"https://x/send?key={key}\"\n",
            "exactly when key_file or key_env",
        ),
        (
            "url = \"http://x/\"\non = [\"opened\", \"exploded\"]\n",
            "`exploded` is not opened, updated or closed",
        ),
        (
            "url = \"http://x/\"\nkinds = [\"dragons\"]\n",
            "`dragons` is not an incident kind",
        ),
        ("url = \"http://x/\"\nformat = \"telegram\"\n", "wecom"),
    ] {
        let err = parse(&action(body)).unwrap_err().to_string();
        assert!(
            err.contains("actions[0]") && err.contains(message),
            "{body}: {err}"
        );
    }
}

#[test]
fn presence_and_overlap_membership_have_defaults_and_are_checked() {
    let zone = "\n[[cameras.zones]]\nid = \"lift\"\npolygon = [[0, 0], [1, 0], [1, 1]]\n";
    let text = format!("{MINIMAL}{zone}[cameras.zones.presence]\n");
    let cfg = parse(&text).unwrap();
    let z = &cfg.cameras[0].zones[0];
    assert_eq!(z.membership, MembershipMode::BottomCentre);
    let p = z.presence.as_ref().unwrap();
    assert_eq!(p.kind, PresenceKind::Intrusion);
    assert_eq!(p.min_time, Duration::from_secs(1));
    assert_eq!(z.rule_names(), vec!["presence"]);

    let text = format!(
        "{MINIMAL}{zone}membership = \"overlap\"\nmin_overlap = 1.5\n[cameras.zones.presence]\nkind = \"two_wheeler_in_elevator\"\n"
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("min_overlap") && err.contains("(0, 1]"),
        "{err}"
    );
    let text = format!("{MINIMAL}{zone}[cameras.zones.presence]\nkind = \"dragons\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("two_wheeler_in_elevator"), "{err}");
    let text = format!("{MINIMAL}{zone}membership = \"middle\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("overlap"), "{err}");
}

#[test]
fn regions_are_auto_by_default_and_checked_with_their_place() {
    assert_eq!(
        parse(MINIMAL).unwrap().cameras[0].regions,
        RegionsSetting::Auto
    );
    let with = |value: &str| MINIMAL.replace("url = ", &format!("regions = {value}\nurl = "));
    assert_eq!(
        parse(&with("\"full\"")).unwrap().cameras[0].regions,
        RegionsSetting::Full
    );
    assert_eq!(
        parse(&with("[[0.0, 0.5, 0.5, 1.0]]")).unwrap().cameras[0].regions,
        RegionsSetting::List(vec![[0.0, 0.5, 0.5, 1.0]])
    );
    let err = parse(&with("\"tiles\"")).unwrap_err().to_string();
    assert!(
        err.contains(":8:") && err.contains("cameras[0].regions"),
        "got: {err}"
    );
    assert!(err.contains("auto") && err.contains("full"), "got: {err}");
    let err = parse(&with("[[0.5, 0.5, 0.2, 1.0]]"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":8:") && err.contains("region 0"),
        "got: {err}"
    );
    let err = parse(&with("[]")).unwrap_err().to_string();
    assert!(err.contains("needs 1 to 16 rectangles"), "got: {err}");
}

#[test]
fn hardware_decoder_names_are_checked_and_listed() {
    let text = MINIMAL.replace("url = ", "hwaccel = \"vaapi2\"\nurl = ");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains(":8:"), "got: {err}");
    assert!(err.contains("cameras[0].hwaccel"), "got: {err}");
    assert!(
        err.contains("unknown hardware decoder `vaapi2`") && err.contains("rkmpp"),
        "got: {err}"
    );
    let text = MINIMAL.replace("url = ", "hwaccel = \"rkmpp\"\nurl = ");
    assert_eq!(
        parse(&text).unwrap().cameras[0].hwaccel.as_deref(),
        Some("rkmpp")
    );
}

#[test]
fn detector_backend_is_checked_against_the_build() {
    let with = |backend: &str| format!("{MINIMAL}\n[detector]\nbackend = \"{backend}\"\n");
    assert_eq!(
        parse(&with("ort")).unwrap().detector.backend,
        DetectorBackend::Ort
    );
    let err = parse(&with("onnx")).unwrap_err().to_string();
    assert!(err.contains(":11:11:"), "got: {err}");
    assert!(err.contains("expected `ort` or `tract`"), "got: {err}");
    let tract = parse(&with("tract"));
    if cfg!(feature = "tract") {
        assert_eq!(tract.unwrap().detector.backend, DetectorBackend::Tract);
    } else {
        let err = tract.unwrap_err().to_string();
        assert!(err.contains("detector.backend"), "got: {err}");
        assert!(err.contains("--features tract"), "got: {err}");
    }
}

#[test]
fn wrong_type_points_at_the_value() {
    let text = MINIMAL.replace("url = ", "detect_fps = \"fast\"\nurl = ");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains(":8:14:"), "got: {err}");
    assert!(err.contains("cameras[0].detect_fps"), "got: {err}");
}

#[test]
fn syntax_error_has_position() {
    let err = parse("[site\nid = 1").unwrap_err().to_string();
    assert!(
        err.starts_with("/etc/gridwatch/config.toml:1:"),
        "got: {err}"
    );
    assert!(!err.contains('\n'));
}

#[test]
fn missing_required_field_is_named() {
    let err = parse("[site]\nid = \"x\"\n").unwrap_err().to_string();
    assert!(err.contains("missing field `grid_code`"), "got: {err}");
}

#[test]
fn validation_error_points_at_the_field() {
    let text = MINIMAL.replace("url = ", "detect_fps = 0.0\nurl = ");
    let err = parse(&text).unwrap_err().to_string();
    assert_eq!(
        err,
        "/etc/gridwatch/config.toml:8:14: cameras[0].detect_fps: must be in (0, 60], got 0"
    );
}

#[test]
fn duplicate_camera_ids_are_rejected() {
    let text = format!("{MINIMAL}\n[[cameras]]\nid = \"gate\"\nurl = \"x.mp4\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("already used by cameras[0]"), "got: {err}");
    assert!(err.contains(":11:6:"), "got: {err}");
}

const ZONE: &str = r#"
[[cameras.zones]]
id = "lane"
polygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]
[cameras.zones.illegal_parking]
dwell = "3m"
"#;

#[test]
fn zones_and_rules_parse_with_defaults() {
    let cfg = parse(&format!("{MINIMAL}{ZONE}")).unwrap();
    let zone = &cfg.cameras[0].zones[0];
    assert_eq!(zone.inertia, 2);
    let rule = zone.illegal_parking.as_ref().unwrap();
    assert_eq!(rule.dwell, Duration::from_secs(180));
    assert_eq!(rule.grace, Duration::from_secs(30));
    assert!(zone.crowding.is_none());
    assert_eq!(cfg.cameras[0].offline_after, Duration::from_secs(60));
}

#[test]
fn zone_polygon_outside_the_picture_is_rejected() {
    let text = format!("{MINIMAL}{ZONE}").replace("[1.0, 1.0]]", "[1.0, 1.5]]");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("cameras[0].zones[0].polygon"), "{err}");
    assert!(err.contains("outside [0, 1]"), "{err}");
    assert!(err.contains(":11:"), "points at the polygon line: {err}");
}

/// The error for `text`, which must name `field` and point at `line` of the file.
fn error_of(text: &str, field: &str, line: usize, what: &str) {
    let err = parse(text).unwrap_err().to_string();
    assert!(err.contains(field), "names {field}: {err}");
    assert!(
        err.starts_with(&format!("/etc/gridwatch/config.toml:{line}:")),
        "points at line {line}: {err}"
    );
    assert!(err.contains(what), "says {what:?}: {err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn reviewer_accounts_need_a_unique_name_and_a_credential() {
    let web = "\n[web]\ntoken_file = \"web.token\"\n";
    let ok = format!("{MINIMAL}{web}[[web.reviewers]]\nname = \"王芳\"\npassword_env = \"P1\"\n");
    let config = parse(&ok).unwrap();
    assert_eq!(config.web.unwrap().reviewers[0].name, "王芳");
    // Lines: [web] is 10, the reviewer's table 12 and its name 13.
    error_of(
        &format!("{MINIMAL}{web}[[web.reviewers]]\nname = \"王芳\"\n"),
        "web.reviewers[0].name",
        13,
        "needs password_file, password_env or token_file",
    );
    error_of(
        &format!("{ok}[[web.reviewers]]\nname = \"王芳\"\ntoken_file = \"t\"\n"),
        "web.reviewers[1].name",
        16,
        "used by another reviewer",
    );
}

#[test]
fn values_found_by_probing_are_rejected_with_their_position() {
    // update_every = "0s" made an open incident send an update on every frame.
    error_of(
        &format!("{MINIMAL}\n[incidents]\nupdate_every = \"0s\"\n"),
        "incidents.update_every",
        11,
        "at least 1s",
    );
    // A point with three coordinates was cut to two without a word.
    error_of(
        &format!("{MINIMAL}{ZONE}").replace("[1.0, 0.5], [1.0", "[1.0, 0.5, 0.2], [1.0"),
        "cameras[0].zones[0].polygon",
        12,
        "point 1 has 3 coordinate(s)",
    );
    // Three points on one line enclose nothing: no object is ever inside.
    error_of(
        &format!("{MINIMAL}{ZONE}").replace(
            "[[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]",
            "[[0.0, 0.5], [0.5, 0.5], [1.0, 0.5]]",
        ),
        "cameras[0].zones[0].polygon",
        12,
        "encloses no area",
    );
    error_of(
        &format!("{MINIMAL}{ZONE}").replace(
            "[[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]",
            "[[0.2, 0.2], [0.2, 0.2], [0.2, 0.2]]",
        ),
        "cameras[0].zones[0].polygon",
        12,
        "encloses no area",
    );
    error_of(
        &format!("{MINIMAL}\n[mqtt]\nhost = \"127.0.0.1\"\nport = 0\n"),
        "mqtt.port",
        12,
        "1..=65535",
    );
    error_of(
        &format!(
            "{MINIMAL}\n[mqtt]\nhost = \"127.0.0.1\"\n[mqtt.tls]\nserver_name = \"not a name\"\n"
        ),
        "mqtt.tls.server_name",
        13,
        "not a DNS name",
    );
}

#[test]
fn a_line_s_object_height_is_checked_as_a_zone_s() {
    let line = "\n[[cameras.lines]]\nid = \"door\"\npoints = [[0.5, 0.0], [0.5, 1.0]]\n";
    let config = parse(&format!("{MINIMAL}{line}min_object_height = 0.3\n")).unwrap();
    assert_eq!(config.cameras[0].lines[0].min_object_height, Some(0.3));
    assert_eq!(
        parse(&format!("{MINIMAL}{line}")).unwrap().cameras[0].lines[0].min_object_height,
        None
    );
    error_of(
        &format!("{MINIMAL}{line}min_object_height = 0.0\n"),
        "cameras[0].lines[0].min_object_height",
        13,
        "must be in (0.001, 1]",
    );
}

#[test]
fn a_missing_tls_file_is_an_error_at_its_line() {
    let text = format!(
        "{MINIMAL}\n[mqtt]\nhost = \"127.0.0.1\"\n[mqtt.tls]\nca_file = \"/nonexistent/ca.pem\"\n"
    );
    error_of(
        &text,
        "mqtt.tls.ca_file",
        13,
        "cannot read /nonexistent/ca.pem",
    );
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_at_the_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let mut bytes = MINIMAL.as_bytes().to_vec();
    bytes.extend_from_slice(b"name = \"caf\xe9\"\n");
    std::fs::write(&path, &bytes).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:9:12:", path.display())),
        "{err}"
    );
    assert!(err.contains("not UTF-8 (byte 0xe9)"), "{err}");
}

#[test]
fn bad_schedule_names_the_rule() {
    let text = format!("{MINIMAL}{ZONE}schedule = [\"nightly\"]\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("cameras[0].zones[0].illegal_parking.schedule"),
        "{err}"
    );
    assert!(err.contains("not a window"), "{err}");
}

#[test]
fn duplicate_zone_ids_and_bad_tracker_thresholds() {
    let text = format!("{MINIMAL}{ZONE}{ZONE}");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("already used by zones[0]"), "{err}");
    let text = format!("{MINIMAL}\n[tracker]\nlow_score = 0.6\nhigh_score = 0.5\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("tracker.low_score"), "{err}");
}

#[test]
fn offsets_parse() {
    assert_eq!(parse_offset("+08:00").unwrap().local_minus_utc(), 28800);
    assert_eq!(parse_offset("-0330").unwrap().local_minus_utc(), -12600);
    assert_eq!(parse_offset("Z").unwrap().local_minus_utc(), 0);
    assert!(parse_offset("Asia/Shanghai").is_none());
    assert!(parse_offset("+25:00").is_none());
}

#[test]
fn bad_timezone_is_explained() {
    let text = MINIMAL.replace("grid_code", "timezone = \"CST\"\ngrid_code");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("site.timezone"), "got: {err}");
    assert!(err.contains("not a UTC offset"), "got: {err}");
}

#[test]
fn line_col_counts_characters() {
    let text = "a = \"网格\"\nb = 1";
    assert_eq!(line_col(text, 0), (1, 1));
    let b = text.find('b').unwrap();
    assert_eq!(line_col(text, b), (2, 1));
    let one = text.find('1').unwrap();
    assert_eq!(line_col(text, one), (2, 5));
}
