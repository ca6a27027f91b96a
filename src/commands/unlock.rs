//! `relayctl unlock LOCK_ID`: break a team lease (SPEC "Working as a team") that a crashed apply
//! left in the stores, wherever the overrides file's stores hold it.

use super::load;
use crate::exit::Exit;
use crate::settings::Settings;
use crate::ui;
use anyhow::{bail, Result};
use tokio::runtime::Runtime;

/// Breaks the lease `id` in every store that holds it, with a warning; exit 1 when none does.
pub fn run(settings: &Settings, rt: &Runtime, id: &str) -> Result<Exit> {
    let (_, stores) = load(settings)?;
    let spots = stores.lease_spots();
    let broken = rt.block_on(crate::lease::unlock(&spots, id.trim()))?;
    if broken.is_empty() {
        let places: Vec<&str> = spots.iter().map(|s| s.shown.as_str()).collect();
        bail!(
            "no team lease {:?} is held in {}: it ended already (its run released it, or it expired). Nothing was \
             changed",
            id.chars().filter(|c| !c.is_control()).take(40).collect::<String>(),
            if places.is_empty() { "any store of the overrides file".to_owned() } else { places.join(", ") }
        );
    }
    for (place, holder) in &broken {
        ui::out::eprintln(&format!(
            "{} broke the team lock on {place}: {}. If that run is in fact still going, it may still write: each \
             of its writes is a compare-and-set, so none overwrites another's, but run `relayctl plan` once it \
             has ended to see where the stores stand.",
            ui::paint(ui::WARNING, "warning:"),
            holder.describe()
        ));
    }
    settings.status(format!(
        "Unlocked: lease {} is broken in {} store(s).",
        broken[0].1.id,
        broken.len()
    ));
    Ok(Exit::Success)
}
