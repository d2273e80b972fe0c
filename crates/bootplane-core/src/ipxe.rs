//! iPXE scripts: the generic entry script and the rendering of a [`BootDecision`]. Every
//! script starts with `#!ipxe` and uses only a small set of commands
//! ([`KNOWN_COMMANDS`]); [`lint`] checks both, and tests run it over every answer.
//! Anything observed from the wire is reduced to a safe alphabet before it is echoed,
//! because iPXE expands `${...}` in every line.

use crate::decision::BootDecision;
use crate::identity::Observed;

/// The commands bootplane's scripts may use.
pub const KNOWN_COMMANDS: &[&str] = &[
    "echo", "kernel", "initrd", "boot", "chain", "exit", "sanboot", "sleep", "iseq", "isset", "goto",
    "imgfree", "set", "prompt", "reboot", "shell", "dhcp", "ifconf", "ifopen",
];

/// The entry script at `/boot.ipxe`: hands iPXE's own identity variables to the decision.
/// Every way out of it ends in `exit 1` (see [`local_boot_tail`]); `bootplane_local` tells
/// a local-boot answer (which leaves with status 1 too) from an unreachable server.
pub fn entry_script(server: &str) -> String {
    format!(
        "#!ipxe\n\
         # bootplane entry script: ask the server what this machine should boot.\n\
         chain --autofree {server}/v1/boot/ipxe?mac=${{mac:hexhyp}}&uuid=${{uuid}}&serial=${{serial:uristring}}&arch=${{buildarch}}&platform=${{platform}} || goto failed\n\
         exit 1\n\
         :failed\n\
         isset ${{bootplane_local}} && exit 1 ||\n\
         echo bootplane: could not reach {server}; booting local disk\n\
         sleep 5\n\
         exit 1\n"
    )
}

/// Keeps only characters that iPXE prints as they are. Backticks (our messages quote
/// names with them) are dropped rather than shown as `?`.
fn safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '`')
        .map(|c| if c.is_ascii_alphanumeric() || " .,:/_-+=@()".contains(c) { c } else { '?' })
        .take(200)
        .collect()
}

fn local_boot_tail() -> &'static str {
    // BIOS: hand the first disk to the BIOS. UEFI (and BIOS if that fails): leave iPXE with
    // a failure status. The UEFI boot manager then tries the next entry of BootOrder (the
    // disk); a boot option that returns EFI_SUCCESS ends the walk in the setup menu
    // instead (UEFI 2.9, 3.1.1). BIOS takes a failed PXE ROM as "try the next device".
    "set bootplane_local 1\n\
     iseq ${platform} efi && goto local_efi ||\n\
     sanboot --no-describe --drive 0x80 || goto local_efi\n\
     :local_efi\n\
     exit 1\n"
}

pub fn render(decision: &BootDecision, observed: &Observed) -> String {
    let mut s = String::from("#!ipxe\n");
    match decision {
        BootDecision::Install { machine, bundle, plan } => {
            s += &format!("echo bootplane: installing {} from bundle {}\n", safe(machine), safe(bundle));
            s += "imgfree\n";
            let initrd_names: Vec<String> = plan.initrds.iter().map(|(n, _)| format!("initrd={n}")).collect();
            s += &format!("kernel {} {} {}\n", plan.kernel_url, initrd_names.join(" "), plan.args);
            for (name, url) in &plan.initrds {
                s += &format!("initrd --name {name} {url}\n");
            }
            s += "boot\n";
        }
        BootDecision::LocalBoot { machine, state } => {
            let why = crate::decision::local_boot_note(*state);
            s += &format!("echo bootplane: {} is {}{}: booting local disk\n", safe(machine), state, why);
            s += local_boot_tail();
        }
        BootDecision::Quarantine { reason } => {
            s += &format!("echo bootplane: QUARANTINE: {}\n", safe(reason));
            s += &format!(
                "echo bootplane: observed mac={} uuid={} serial={} arch={}\n",
                observed.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                observed.uuid.as_ref().map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
                safe(observed.serial.as_deref().unwrap_or("-")),
                safe(observed.arch.as_deref().unwrap_or("-")),
            );
            s += "echo bootplane: no installer is served to this machine; booting local disk\n";
            s += "sleep 5\n";
            s += local_boot_tail();
        }
        BootDecision::Misconfigured { machine, reason } => {
            s += &format!("echo bootplane: cannot install {}: {}\n", safe(machine), safe(reason));
            s += "echo bootplane: fix the configuration and reboot; booting local disk\n";
            s += "sleep 5\n";
            s += local_boot_tail();
        }
        BootDecision::AttemptsExhausted { machine, attempts } => {
            s += &format!(
                "echo bootplane: {} used {} install attempts without reporting; marked failed\n",
                safe(machine),
                attempts
            );
            s += local_boot_tail();
        }
    }
    s
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LintError {
    #[error("script does not start with #!ipxe")]
    NoHeader,
    #[error("line {line}: unknown command `{command}`")]
    UnknownCommand { line: usize, command: String },
}

/// Checks the header and that every command (including those after `||` and `&&`) is
/// one iPXE knows.
pub fn lint(script: &str) -> Result<(), LintError> {
    let mut lines = script.lines();
    if lines.next() != Some("#!ipxe") {
        return Err(LintError::NoHeader);
    }
    for (i, line) in lines.enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || (t.starts_with(':') && !t.contains(' ')) {
            continue;
        }
        for part in t.split("||").flat_map(|p| p.split("&&")) {
            let Some(cmd) = part.split_whitespace().next() else { continue };
            if !KNOWN_COMMANDS.contains(&cmd) {
                return Err(LintError::UnknownCommand { line: i + 2, command: cmd.to_string() });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MachineState;
    use crate::os::InstallerPlan;

    #[test]
    fn every_answer_lints() {
        let obs = Observed::from_raw(Some("52:54:00:00:00:01"), None, Some("${evil} $(x)\nkernel"), Some("x86_64"), None).unwrap();
        let answers = [
            BootDecision::Install {
                machine: "m".into(),
                bundle: "b".into(),
                plan: InstallerPlan { kernel_url: "http://k".into(), initrds: vec![("initrd.img".into(), "http://i".into())], args: "console=ttyS0".into() },
            },
            BootDecision::LocalBoot { machine: "m".into(), state: MachineState::Installed },
            BootDecision::Quarantine { reason: "unknown; ${x}\nshell".into() },
            BootDecision::Misconfigured { machine: "m".into(), reason: "r".into() },
            BootDecision::AttemptsExhausted { machine: "m".into(), attempts: 3 },
        ];
        for a in &answers {
            let s = render(a, &obs);
            lint(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
            assert!(!s.contains("${evil}") && !s.contains("${x}"), "{s}");
        }
        lint(&entry_script("http://127.0.0.1:8080")).unwrap();
    }

    /// UEFI's boot manager ends its BootOrder walk when an option returns EFI_SUCCESS,
    /// so every way out of iPXE toward the disk must carry a failure status.
    #[test]
    fn leaving_ipxe_reports_failure_to_the_firmware() {
        let local = [
            BootDecision::LocalBoot { machine: "m".into(), state: MachineState::Installed },
            BootDecision::Quarantine { reason: "unknown".into() },
            BootDecision::Misconfigured { machine: "m".into(), reason: "r".into() },
            BootDecision::AttemptsExhausted { machine: "m".into(), attempts: 3 },
        ];
        let scripts = local.iter().map(|d| render(d, &Observed::default())).chain([entry_script("http://s")]);
        for s in scripts {
            let exits: Vec<&str> = s.lines().filter_map(|l| l.split("exit").nth(1)).collect();
            assert!(!exits.is_empty() && exits.iter().all(|rest| rest.trim_start().starts_with('1')), "{s}");
        }
        let local = render(&BootDecision::LocalBoot { machine: "m".into(), state: MachineState::Written }, &Observed::default());
        assert!(local.contains("set bootplane_local 1") && local.contains("sanboot --no-describe --drive 0x80"), "{local}");
        assert!(entry_script("http://s").contains("isset ${bootplane_local} && exit 1"));
    }

    #[test]
    fn quoted_names_read_plainly_on_the_console() {
        let d = BootDecision::Misconfigured { machine: "m3".into(), reason: "bundle `rescue` is not defined".into() };
        let s = render(&d, &Observed::default());
        assert!(s.contains("cannot install m3: bundle rescue is not defined"), "{s}");
    }

    #[test]
    fn uefi_initrd_name_matches_kernel_line() {
        let plan = InstallerPlan { kernel_url: "http://k".into(), initrds: vec![("initrd.img".into(), "http://i".into())], args: String::new() };
        let s = render(&BootDecision::Install { machine: "m".into(), bundle: "b".into(), plan }, &Observed::default());
        assert!(s.contains("kernel http://k initrd=initrd.img"));
        assert!(s.contains("initrd --name initrd.img http://i"));
    }

    #[test]
    fn lint_rejects_unknown_commands() {
        assert_eq!(lint("echo hi"), Err(LintError::NoHeader));
        assert!(matches!(lint("#!ipxe\nfoo bar\n"), Err(LintError::UnknownCommand { line: 2, .. })));
        assert!(matches!(lint("#!ipxe\necho a || rm -rf\n"), Err(LintError::UnknownCommand { .. })));
    }
}
