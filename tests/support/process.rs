//! Processes tests start that must not outlive the test binary: each runs under a
//! small shell watchdog that stops it when the test process is gone, even if the
//! test panicked or was killed.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

pub struct OwnedProcess {
    pub name: String,
    pidfile: PathBuf,
    pub log: PathBuf,
    _watchdog: std::process::Child,
}

fn quote(s: &OsStr) -> String {
    format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"))
}

impl OwnedProcess {
    /// Starts `program args…` with `envs`, output to `log`.
    pub fn spawn<I, S>(
        name: &str,
        program: &Path,
        args: I,
        envs: &[(&str, String)],
        log: &Path,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let pidfile = log.with_extension("pid");
        let _ = std::fs::remove_file(&pidfile);
        let mut command_line = quote(program.as_os_str());
        for a in args {
            command_line.push(' ');
            command_line.push_str(&quote(a.as_ref()));
        }
        let owner = std::process::id();
        let script = format!(
            "{command_line} >>{log} 2>&1 & child=$!; echo $child >{pidfile}; \
             while [ -d /proc/{owner} ] && kill -0 $child 2>/dev/null; do sleep 0.5; done; \
             kill -TERM $child 2>/dev/null; sleep 2; kill -KILL $child 2>/dev/null",
            log = quote(log.as_os_str()),
            pidfile = quote(pidfile.as_os_str()),
        );
        let mut cmd = Command::new("setsid");
        cmd.args(["bash", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let watchdog = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pidfile.exists() {
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            name: name.to_string(),
            pidfile,
            log: log.to_path_buf(),
            _watchdog: watchdog,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    pub fn is_running(&self) -> bool {
        self.pid()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    /// The last lines of its log, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        self.signal("-TERM");
    }
}
