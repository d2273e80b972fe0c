//! Where a machine is in the boot chain, read from its events: DHCP → first stage →
//! iPXE script → installer → config fetched → reported → local boot. The dashboard's
//! chain, the fleet API's `step` and a machine page's boots all come from here, so the
//! browser never guesses a step from an event name itself.
//!
//! Pure: takes event kinds and details as the store keeps them, no clock.

use serde::Serialize;
use serde_json::Value;

/// One link of the boot chain, in the order a network install walks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// An address (or proxy boot answer) from DHCP.
    Dhcp,
    /// The first-stage loader (iPXE, shim, PXELINUX) over TFTP or HTTP.
    FirstStage,
    /// bootplane's per-machine iPXE script (the boot decision).
    Script,
    /// The installer environment fetched its config (live installer Ignition, user-data).
    Installer,
    /// The machine's own config (Ignition) was fetched.
    ConfigFetched,
    /// The machine reported back (written, installed or failed).
    Reported,
    /// A network boot after the install was answered "boot the local disk".
    LocalBoot,
}

impl Step {
    pub const ALL: [Step; 7] =
        [Step::Dhcp, Step::FirstStage, Step::Script, Step::Installer, Step::ConfigFetched, Step::Reported, Step::LocalBoot];

    pub fn label(self) -> &'static str {
        match self {
            Step::Dhcp => "DHCP",
            Step::FirstStage => "first stage",
            Step::Script => "iPXE script",
            Step::Installer => "installer",
            Step::ConfigFetched => "config fetched",
            Step::Reported => "reported",
            Step::LocalBoot => "local boot",
        }
    }

    /// Its position in [`Step::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Dhcp => "dhcp",
            Step::FirstStage => "first_stage",
            Step::Script => "script",
            Step::Installer => "installer",
            Step::ConfigFetched => "config_fetched",
            Step::Reported => "reported",
            Step::LocalBoot => "local_boot",
        }
    }
}

/// The step an event shows the machine reached, if it is one of the chain's.
/// Refusals and alarms are no step: a refused fetch did not get the machine further.
pub fn step_of(kind: &str, detail: &Value) -> Option<Step> {
    match kind {
        "dhcp.offer" | "dhcp.ack" | "dhcp.proxy_offer" | "dhcp.proxy_ack" => Some(Step::Dhcp),
        "tftp.read" | "http.boot_file" => Some(Step::FirstStage),
        "boot.script" => match detail.get("decision").and_then(Value::as_str) {
            Some("local") => Some(Step::LocalBoot),
            _ => Some(Step::Script),
        },
        "config.served" | "config.refetched" => match detail.get("kind").and_then(Value::as_str) {
            Some("ignition") | Some("meta-data") | Some("vendor-data") => Some(Step::ConfigFetched),
            Some(_) => Some(Step::Installer),
            None => None,
        },
        "state.changed" => match detail.get("to").and_then(Value::as_str) {
            Some("written") | Some("installed") | Some("failed") if detail.get("trigger").and_then(Value::as_str) == Some("report") => {
                Some(Step::Reported)
            }
            _ => None,
        },
        _ => None,
    }
}

/// What one event contributes to a timeline: itself and the step it shows, if any.
pub trait ChainEvent {
    fn kind(&self) -> &str;
    fn detail(&self) -> &Value;
}

/// Events grouped by boot, oldest first. A boot starts when the machine goes back to an
/// early step (DHCP, first stage, script) after reaching that step or a later one in the
/// current boot: the firmware started over. The one exception is the DHCP that the
/// first stage (iPXE) does itself. Events before any step belong to the first
/// group; events without a step join the boot they happen in.
pub fn boots<E: ChainEvent>(events: &[E]) -> Vec<Vec<&E>> {
    let mut out: Vec<Vec<&E>> = Vec::new();
    let mut furthest: Option<Step> = None;
    for e in events {
        let step = step_of(e.kind(), e.detail());
        if out.is_empty() || step.is_some_and(|s| restarts(s, furthest)) {
            out.push(Vec::new());
            furthest = None;
        }
        if let Some(s) = step {
            furthest = Some(furthest.map_or(s, |f| f.max(s)));
        }
        out.last_mut().expect("a group was pushed").push(e);
    }
    out
}

/// Whether reaching `step` after `furthest` in the current boot means a new boot.
fn restarts(step: Step, furthest: Option<Step>) -> bool {
    match (step, furthest) {
        // Offer then ack, and iPXE's own DHCP after the first stage: the same boot.
        (Step::Dhcp, Some(Step::Dhcp | Step::FirstStage)) => false,
        (s, Some(f)) => s <= Step::Script && s <= f,
        (_, None) => false,
    }
}

/// The furthest step of the last boot in `events` (oldest first), and whether that
/// boot ended in a failure.
pub fn progress<E: ChainEvent>(events: &[E]) -> Progress {
    events.iter().fold(Progress::default(), |p, e| p.advance(e.kind(), e.detail()))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The furthest step the machine's latest boot reached.
    pub step: Option<Step>,
    /// The latest boot ended in a failure report (or the attempts ran out).
    pub failed: bool,
    /// Every step the latest boot reached, bit `i` for `Step::ALL[i]`: a local boot
    /// reaches DHCP, first stage and local boot, not the install steps between.
    pub reached: u8,
}

impl Progress {
    pub fn reached(&self, step: Step) -> bool {
        self.reached & (1 << step.index()) != 0
    }

    /// The progress after one more event: what a live view applies event by event,
    /// and what [`progress`] folds over a machine's history.
    pub fn advance(self, kind: &str, detail: &Value) -> Progress {
        let mut p = self;
        if let Some(s) = step_of(kind, detail) {
            if restarts(s, p.step) {
                p = Progress::default();
            }
            p.step = Some(p.step.map_or(s, |f| f.max(s)));
            p.reached |= 1 << s.index();
        }
        if kind == "state.changed" {
            match detail.get("to").and_then(Value::as_str) {
                Some("failed") => p.failed = true,
                // Provisioned again (or retired): the failure is history.
                Some("provision") | Some("installing") | Some("retired") => p.failed = false,
                _ => {}
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct E(&'static str, Value);
    impl ChainEvent for E {
        fn kind(&self) -> &str {
            self.0
        }
        fn detail(&self) -> &Value {
            &self.1
        }
    }

    fn install_boot() -> Vec<E> {
        vec![
            E("dhcp.offer", json!({})),
            E("dhcp.ack", json!({})),
            E("tftp.read", json!({"file": "undionly.kpxe"})),
            E("dhcp.ack", json!({})),
            E("boot.script", json!({"decision": "install", "bundle": "fcos"})),
            E("config.served", json!({"kind": "installer"})),
            E("state.changed", json!({"from": "provision", "to": "installing", "trigger": "config_fetched"})),
            E("config.served", json!({"kind": "ignition"})),
            E("state.changed", json!({"from": "installing", "to": "written", "trigger": "report"})),
        ]
    }

    #[test]
    fn an_install_reaches_reported_in_one_boot() {
        let ev = install_boot();
        // iPXE's own DHCP after the first stage is the same boot.
        assert_eq!(boots(&ev).len(), 1);
        assert_eq!((progress(&ev).step, progress(&ev).failed), (Some(Step::Reported), false));
    }

    #[test]
    fn the_next_network_boot_starts_a_new_boot_and_ends_at_local_boot() {
        let mut ev = install_boot();
        ev.push(E("dhcp.offer", json!({})));
        ev.push(E("tftp.read", json!({})));
        ev.push(E("boot.script", json!({"decision": "local"})));
        ev.push(E("state.changed", json!({"from": "written", "to": "installed", "trigger": "report"})));
        let groups = boots(&ev);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1].len(), 4);
        let p = progress(&ev);
        assert_eq!(p.step, Some(Step::LocalBoot));
        // The local boot skipped the install steps; the chain must not show them reached.
        let reached: Vec<Step> = Step::ALL.into_iter().filter(|s| p.reached(*s)).collect();
        assert_eq!(reached, [Step::Dhcp, Step::FirstStage, Step::Reported, Step::LocalBoot]);
    }

    #[test]
    fn a_boot_that_stops_early_shows_where() {
        let mut ev = install_boot();
        ev.push(E("dhcp.offer", json!({})));
        ev.push(E("tftp.read", json!({})));
        assert_eq!((progress(&ev).step, progress(&ev).failed), (Some(Step::FirstStage), false));
        // Refusals get a machine no further.
        ev.push(E("config.refused", json!({"kind": "ignition"})));
        assert_eq!(progress(&ev).step, Some(Step::FirstStage));
    }

    #[test]
    fn advancing_event_by_event_agrees_with_the_grouping() {
        let mut ev = install_boot();
        ev.push(E("state.changed", json!({"from": "written", "to": "failed", "trigger": "report_timeout"})));
        ev.push(E("state.changed", json!({"from": "failed", "to": "provision", "trigger": "admin_provision"})));
        ev.extend(install_boot());
        ev.push(E("dhcp.offer", json!({})));
        ev.push(E("boot.script", json!({"decision": "local"})));
        let mut p = Progress::default();
        for (i, e) in ev.iter().enumerate() {
            p = p.advance(e.kind(), e.detail());
            let groups = boots(&ev[..=i]);
            let last = groups.last().unwrap();
            assert_eq!(p.step, last.iter().filter_map(|e| step_of(e.kind(), e.detail())).max(), "after event {i}");
        }
    }

    #[test]
    fn a_failure_report_marks_the_boot_failed() {
        let mut ev = install_boot();
        ev.pop();
        ev.push(E("state.changed", json!({"from": "installing", "to": "failed", "trigger": "report"})));
        assert_eq!((progress(&ev).step, progress(&ev).failed), (Some(Step::Reported), true));
    }

    #[test]
    fn admin_moves_are_no_step_and_no_events_is_no_progress() {
        assert_eq!(step_of("state.changed", &json!({"to": "installed", "trigger": "admin_provision"})), None);
        assert_eq!(step_of("state.changed", &json!({"to": "provision", "trigger": "apply"})), None);
        assert_eq!(progress::<E>(&[]), Progress::default());
        // Events before any step open the first boot rather than being lost.
        let ev = vec![E("state.changed", json!({"to": "provision", "trigger": "apply"})), E("dhcp.offer", json!({}))];
        assert_eq!(boots(&ev).len(), 1);
    }
}
