//! The `command` driver: PDUs, smart plugs, a web power strip (seed 004), anything with a
//! command line. Each action is an argv template run directly (no shell, so a machine's
//! name or address cannot become shell syntax) with `{{ name }}`, `{{ mac }}`, `{{ ip }}`
//! replaced, under a deadline after which it is killed. A non-zero exit is a failure
//! that quotes the end of its stderr; `status` prints `on` or `off`.

use crate::{PowerAction, PowerDriver, PowerError, PowerState, Result, Step, Target};
use bootplane_core::power::CommandSpec;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct Command {
    spec: CommandSpec,
    target: Target,
}

const DEFAULT_TIMEOUT: u64 = 30;

impl Command {
    pub fn new(spec: CommandSpec, target: Target) -> Self {
        Command { spec, target }
    }

    fn argv(&self, template: &[String]) -> Vec<String> {
        template
            .iter()
            .map(|a| {
                a.replace("{{ name }}", &self.target.name)
                    .replace("{{ mac }}", self.target.mac.as_deref().unwrap_or(""))
                    .replace("{{ ip }}", self.target.ip.as_deref().unwrap_or(""))
            })
            .collect()
    }

    /// Runs one template to completion (or its deadline); its stdout.
    fn run(&self, step: Step, template: &[String]) -> Result<String> {
        let argv = self.argv(template);
        let secs = self.spec.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let (program, args) = argv.split_first().ok_or_else(|| PowerError::Failed { step, detail: "empty command".into() })?;
        // Said up front: under qemu-user (the aarch64 tests) a failed exec only shows as exit 127.
        if program.contains('/') && !std::path::Path::new(program).exists() {
            return Err(PowerError::Failed { step, detail: format!("cannot run {program}: no such file") });
        }
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PowerError::Failed { step, detail: format!("cannot run {program}: {e}") })?;
        // Drained on threads so a chatty command cannot block on a full pipe.
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let out_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(PowerError::Timeout { step, secs });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(PowerError::Failed { step, detail: format!("{program}: {e}") }),
            }
        };
        let stdout = out_t.join().unwrap_or_default();
        let stderr = err_t.join().unwrap_or_default();
        if !status.success() {
            let tail: String = stderr.trim().chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(PowerError::Failed { step, detail: format!("{program} exited with {status}: {tail}") });
        }
        Ok(stdout)
    }
}

impl PowerDriver for Command {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn status(&self) -> Result<PowerState> {
        let Some(t) = &self.spec.status else {
            return Ok(PowerState::Unknown("no status command".into()));
        };
        let out = self.run(Step::Status, t)?;
        Ok(match out.split_whitespace().next().map(str::to_ascii_lowercase).as_deref() {
            Some("on") => PowerState::On,
            Some("off") => PowerState::Off,
            _ => PowerState::Unknown(format!("status printed {:?}, not on or off", out.trim())),
        })
    }

    fn power(&self, action: PowerAction) -> Result<()> {
        let step = Step::Power(action);
        match (action, &self.spec.cycle) {
            (PowerAction::On, _) => self.run(step, &self.spec.on).map(drop),
            (PowerAction::Off, _) => self.run(step, &self.spec.off).map(drop),
            (PowerAction::Cycle, Some(c)) => self.run(step, c).map(drop),
            (PowerAction::Cycle, None) => {
                self.run(step, &self.spec.off)?;
                // A PDU outlet needs a moment off for the machine's supply to drain.
                std::thread::sleep(Duration::from_secs(2));
                self.run(step, &self.spec.on).map(drop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A scripted PDU: a shell script standing in for a vendor's CLI. It keeps outlet
    /// state in a file, as a real PDU keeps it across calls, and can be told to hang or
    /// fail the way flaky PDUs do (behaviour the driver depends on: exit status, stdout,
    /// time taken). Not reproduced: a PDU's own network and login.
    fn pdu(dir: &std::path::Path) -> std::path::PathBuf {
        let p = dir.join("pdu");
        std::fs::write(
            &p,
            "#!/bin/sh\nstate=\"$(dirname \"$0\")/outlet-$2\"\ncase \"$1\" in\n  on) echo on > \"$state\" ;;\n  off) echo off > \"$state\" ;;\n  \
             status) cat \"$state\" 2>/dev/null || echo off ;;\n  hang) sleep 30 ;;\n  fail) echo 'outlet 7: login refused' >&2; exit 3 ;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn driver(pdu: &std::path::Path, on: &str, timeout: u64) -> Command {
        let t = |verb: &str| vec![pdu.display().to_string(), verb.to_string(), "{{ name }}".to_string()];
        Command::new(
            CommandSpec { on: t(on), off: t("off"), cycle: None, status: Some(t("status")), timeout: Some(timeout) },
            Target { name: "n1".into(), mac: None, ip: None },
        )
    }

    #[test]
    fn a_scripted_pdu_switches_and_reports_its_outlet() {
        let d = tempfile::tempdir().unwrap();
        let c = driver(&pdu(d.path()), "on", 5);
        assert_eq!(c.status().unwrap(), PowerState::Off);
        c.power(PowerAction::On).unwrap();
        assert_eq!(c.status().unwrap(), PowerState::On);
        assert_eq!(std::fs::read_to_string(d.path().join("outlet-n1")).unwrap(), "on\n", "the name was passed as its own argument");
        c.power(PowerAction::Cycle).unwrap();
        assert_eq!(c.status().unwrap(), PowerState::On);
    }

    #[test]
    fn hangs_and_failures_are_reported_with_their_step() {
        let d = tempfile::tempdir().unwrap();
        let p = pdu(d.path());
        let started = Instant::now();
        match driver(&p, "hang", 1).power(PowerAction::On) {
            Err(PowerError::Timeout { step: Step::Power(PowerAction::On), secs: 1 }) => {}
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the hung command was killed");
        let e = driver(&p, "fail", 5).power(PowerAction::On).unwrap_err();
        assert!(e.to_string().contains("exit status: 3") && e.to_string().contains("login refused"), "{e}");
        let missing = Command::new(
            CommandSpec { on: vec!["/nonexistent/pdu".into()], off: vec!["x".into()], cycle: None, status: None, timeout: None },
            Target::default(),
        );
        assert!(missing.power(PowerAction::On).unwrap_err().to_string().contains("cannot run /nonexistent/pdu"));
        assert!(matches!(missing.status().unwrap(), PowerState::Unknown(_)));
    }

    #[test]
    fn templates_are_arguments_never_shell() {
        let d = tempfile::tempdir().unwrap();
        let c = Command::new(
            CommandSpec {
                on: vec!["/bin/echo".into(), "{{ name }}".into()],
                off: vec!["x".into()],
                cycle: None,
                status: Some(vec!["/bin/echo".into(), "{{ name }}".into()]),
                timeout: Some(5),
            },
            Target { name: "$(touch pwned);on".into(), mac: None, ip: None },
        );
        let _ = c.status();
        assert!(!std::path::Path::new("pwned").exists() && !d.path().join("pwned").exists());
        assert!(matches!(c.status().unwrap(), PowerState::Unknown(_)), "the whole name is one word, not `on`");
    }
}
