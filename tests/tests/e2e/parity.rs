//! Detection parity: gridwatch's Rust detector against a Python reference built from
//! YOLOX's own demo pre/post-processing (tests/reference/yolox_reference.py), with the real
//! model in both. Same detections, IoU >= 0.99 per matched box, |score difference| <= 1e-3.
//! Each exact-parity test runs once per inference backend (ONNX Runtime and tract), so the
//! armv7 build's engine is held to the same reference as the x86_64 and aarch64 one.

use std::process::Command;

use gridwatch_e2e::*;
use serde_json::Value;

fn reference(args: &[&str]) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/reference/yolox_reference.py"))
        .arg("--model")
        .arg(model_path())
        .arg("--scaler-flags")
        .arg(gridwatch::source::SCALER_FLAGS_NAME)
        .args(args);
    let run = run_ok(&mut cmd);
    serde_json::from_str(&run.stdout()).expect("reference prints JSON")
}

fn dog_jpg_matches_the_reference(backend: &str) {
    let image = media("dog.jpg");
    let ours = run_ok(
        gridwatch()
            .arg("detect")
            .arg(&image)
            .args(["--backend", backend]),
    );
    let ours: Value = serde_json::from_str(&ours.stdout()).expect("detect prints JSON");
    assert!(
        ours["detections"].as_array().is_some_and(|d| d.len() >= 3),
        "{backend}: dog, bicycle and car: {ours}"
    );
    let reference = reference(&["--input", image.to_str().unwrap()]);
    compare_detections(
        &format!("dog.jpg with {backend}"),
        &detections_of(&reference[0]["detections"]),
        &detections_of(&ours["detections"]),
    )
    .unwrap();
}

#[test]
fn dog_jpg_matches_the_reference_with_onnx_runtime() {
    dog_jpg_matches_the_reference("ort");
}

#[test]
fn dog_jpg_matches_the_reference_with_tract() {
    dog_jpg_matches_the_reference("tract");
}

/// A detection region: the crop of the picture letterboxed on its own (the daemon's
/// `regions` path, one swscale pass from the cropped planes) against the reference running
/// FFmpeg's crop then the same scale; boxes back in whole-picture pixels. The region cuts
/// the truck at its right border, so a cut box is compared too.
fn dog_jpg_region_matches_the_reference(backend: &str) {
    let image = media("dog.jpg");
    let ours = run_ok(gridwatch().arg("detect").arg(&image).args([
        "--region",
        "0.1,0.15,0.75,0.98",
        "--backend",
        backend,
    ]));
    let ours: Value = serde_json::from_str(&ours.stdout()).expect("detect prints JSON");
    let region: Vec<u64> = ours["region"]
        .as_array()
        .expect("the region's pixels")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    // 768x576: x from 76.8, y from 86.4, kept even; width and height even.
    assert_eq!(region, [76, 86, 500, 478], "{ours}");
    assert!(
        ours["detections"].as_array().is_some_and(|d| d.len() >= 3),
        "{backend}: dog, bicycle and the cut truck: {ours}"
    );
    let crop = format!("{}:{}:{}:{}", region[0], region[1], region[2], region[3]);
    let reference = reference(&["--input", image.to_str().unwrap(), "--crop", &crop]);
    compare_detections(
        &format!("dog.jpg region {crop} with {backend}"),
        &detections_of(&reference[0]["detections"]),
        &detections_of(&ours["detections"]),
    )
    .unwrap();
}

#[test]
fn dog_jpg_region_matches_the_reference_with_onnx_runtime() {
    dog_jpg_region_matches_the_reference("ort");
}

#[test]
fn dog_jpg_region_matches_the_reference_with_tract() {
    dog_jpg_region_matches_the_reference("tract");
}

/// YOLOX's demo resizes with OpenCV's INTER_LINEAR, gridwatch with swscale in one pass from
/// YUV. The pixels differ by a few grey levels, so only the objects (not the exact scores)
/// must agree: every confident reference detection has a gridwatch twin.
#[test]
fn dog_jpg_agrees_with_yolox_demo_preprocessing() {
    let image = media("dog.jpg");
    let ours = run_ok(gridwatch().arg("detect").arg(&image));
    let ours: Value = serde_json::from_str(&ours.stdout()).unwrap();
    let ours = detections_of(&ours["detections"]);
    let demo = reference(&["--input", image.to_str().unwrap(), "--resize", "cv2"]);
    let demo = detections_of(&demo[0]["detections"]);
    let confident: Vec<&Det> = demo.iter().filter(|d| d.1 >= 0.5).collect();
    assert_eq!(
        confident.len(),
        3,
        "dog, bicycle and truck-as-car: {demo:?}"
    );
    for (class, score, bbox) in confident {
        let twin = ours
            .iter()
            .filter(|d| d.0 == *class)
            .map(|d| (iou(bbox, &d.2), d.1))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or_else(|| panic!("class {class} not found by gridwatch: {ours:?}"));
        assert!(twin.0 >= 0.95, "class {class}: IoU {}", twin.0);
        assert!(
            (twin.1 - score).abs() < 0.05,
            "class {class}: score {} vs {score}",
            twin.1
        );
    }
}

fn car_detection_mp4_matches_the_reference_frame_by_frame(backend: &str) {
    let clip = media("car-detection.mp4");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("[detector]\nbackend = \"{backend}\"\n"),
    );
    let out = dir.path().join("frames.jsonl");
    // 60 detect fps on a 12.5 fps clip: every decoded frame is detected, in decode order,
    // which is the order the reference sees them in.
    run_ok(
        gridwatch()
            .arg("replay")
            .arg("--config")
            .arg(&config)
            .arg("--input")
            .arg(&clip)
            .args(["--detect-fps", "60", "--no-progress", "--out"])
            .arg(&out),
    );
    let ours = read_jsonl(&out);
    let reference = reference(&["--input", clip.to_str().unwrap()]);
    let reference = reference.as_array().unwrap();
    assert_eq!(ours.len(), 377, "every frame of the clip");
    assert_eq!(reference.len(), ours.len(), "same frames decoded");
    let mut with_detections = 0;
    let mut failures = Vec::new();
    for (r, o) in reference.iter().zip(&ours) {
        let context = format!("frame {} (pts {})", r["frame"], o["pts"]);
        let r = detections_of(&r["detections"]);
        if !r.is_empty() {
            with_detections += 1;
        }
        if let Err(e) = compare_detections(&context, &r, &detections_of(&o["detections"])) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{backend}: {} frames differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        with_detections > 20,
        "the clip has detections to compare ({with_detections})"
    );
}

#[test]
fn car_detection_mp4_matches_the_reference_frame_by_frame_with_onnx_runtime() {
    car_detection_mp4_matches_the_reference_frame_by_frame("ort");
}

#[test]
fn car_detection_mp4_matches_the_reference_frame_by_frame_with_tract() {
    car_detection_mp4_matches_the_reference_frame_by_frame("tract");
}
