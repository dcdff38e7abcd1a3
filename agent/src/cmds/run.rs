//! `gridwatch run`: the daemon.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Config file (site, detector, cameras, zones, mqtt, web).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Do not open the cameras: serve the review page and deliver queued events only.
    #[arg(long)]
    pub no_cameras: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    crate::daemon::run(&args.config, !args.no_cameras)
}
