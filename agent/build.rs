//! Embeds the review page's front-end libraries (agent/web/package.json, installed by
//! `npm ci` in scripts/setup.sh) into the binary: the box serves them itself, so the page
//! works on a station network with no way out.

use std::path::Path;

const FILES: &[&str] = &["uPlot.iife.min.js", "uPlot.min.css", "LICENSE"];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let package = Path::new(&manifest).join("web/node_modules/uplot");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    for file in FILES {
        let from = if *file == "LICENSE" {
            package.join(file)
        } else {
            package.join("dist").join(file)
        };
        println!("cargo:rerun-if-changed={}", from.display());
        if let Err(e) = std::fs::copy(&from, Path::new(&out).join(file)) {
            panic!(
                "gridwatch embeds uPlot from {}: {e}; run scripts/setup.sh (it runs `npm ci` in agent/web)",
                from.display()
            );
        }
    }
}
