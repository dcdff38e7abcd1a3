//! Runs the whole scenario suite and prints precision and recall of incidents.
//!
//! `cargo run -p gridwatch-e2e --bin scenario-report` (after scripts/setup.sh). Uses the
//! dev-profile gridwatch binary unless GRIDWATCH_BIN names another.

use gridwatch_e2e::scenario;

fn main() {
    let out = tempfile::tempdir().expect("temporary directory");
    let mut outcomes = Vec::new();
    for name in scenario::all_names() {
        let s = scenario::load(&name);
        eprintln!(
            "running {name}: {}",
            s.description
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        let outcome = scenario::run(&s, out.path());
        for p in &outcome.problems {
            eprintln!("  {p}");
        }
        outcomes.push(outcome);
    }
    print!("{}", scenario::report(&outcomes));
}
