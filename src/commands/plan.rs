//! `relayctl plan`: read the stores, print the changes needed; optionally save them.

use super::{check, load, look, make_plan};
use crate::exit::Exit;
use crate::settings::Settings;
use crate::ui;
use anyhow::Result;
use std::path::Path;
use tokio::runtime::Runtime;

/// Prints the plan (human or `--json`), saves it with `--out`, and exits 2 on changes with
/// `--detailed-exitcode`. Reads only; safe to run at any time.
pub fn run(
    settings: &Settings,
    rt: &Runtime,
    out: Option<&Path>,
    json: bool,
    detailed: bool,
) -> Result<Exit> {
    let (config, stores) = load(settings)?;
    look(settings, &config);
    let plan = make_plan(settings, rt, &config, &stores)?;
    if json {
        check(&plan)?;
        ui::out::print_json(&format!("{}\n", plan.to_json()))?;
    } else {
        ui::out::print(&crate::plan::render(&plan))?;
        check(&plan)?;
    }
    if let Some(out) = out {
        plan.save(out)?;
        settings.status(format!(
            "Saved the plan to {}. Apply exactly it with: relayctl -c {} apply {}",
            out.display(),
            settings.config.display(),
            out.display()
        ));
    }
    Ok(if detailed && plan.has_changes() {
        Exit::Pending
    } else {
        Exit::Success
    })
}
