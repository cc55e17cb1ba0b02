//! The Optuna process (`scripts/sweep_driver.py`, built into the binary): samplers, the
//! ASHA pruner and the study's journal are Optuna's; this side sends one JSON request per
//! line and reads one JSON answer.
use crate::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

const SCRIPT: &str = include_str!("../../scripts/sweep_driver.py");

/// The Python that runs the driver: `SUPERNET_PYTHON`, or the project's `.venv`, with
/// Optuna from `.venv/sweep` (where `scripts/setup` installs it).
pub fn python() -> (PathBuf, PathBuf) {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let python = std::env::var_os("SUPERNET_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv.join("bin/python"));
    (python, venv.join("sweep"))
}

#[derive(Debug, Clone, Deserialize)]
pub struct TrialInfo {
    pub number: usize,
    pub state: String,
    pub params: serde_json::Map<String, Value>,
    pub value: Option<f64>,
}

pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driver {
    /// Start the driver for the study in `dir` (its script is written there).
    pub fn start(dir: &Path, config: &Value) -> Result<Self> {
        let script = dir.join("sweep_driver.py");
        crate::fs::write_atomic(&script, SCRIPT.as_bytes())?;
        let (python, site) = python();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(config.to_string())
            .env("PYTHONPATH", &site)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Other(format!(
                    "cannot start the Optuna driver with {} ({e}); run scripts/setup, or set SUPERNET_PYTHON to a Python with optuna",
                    python.display()
                ))
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Driver {
            child,
            stdin,
            stdout,
        })
    }

    fn call(&mut self, req: Value) -> Result<Value> {
        let fail = |what: String| {
            Error::Other(format!(
                "the Optuna driver failed ({what}); is optuna installed (scripts/setup)?"
            ))
        };
        writeln!(self.stdin, "{req}").map_err(|e| fail(e.to_string()))?;
        self.stdin.flush().map_err(|e| fail(e.to_string()))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| fail(e.to_string()))?;
        if line.is_empty() {
            return Err(fail("it exited".into()));
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| fail(e.to_string()))?;
        if let Some(e) = v.get("error") {
            return Err(fail(e.to_string()));
        }
        Ok(v)
    }

    pub fn trials(&mut self) -> Result<Vec<TrialInfo>> {
        let v = self.call(json!({"op": "trials"}))?;
        serde_json::from_value(v["trials"].clone())
            .map_err(|e| Error::Other(format!("Optuna driver: {e}")))
    }

    pub fn ask(&mut self) -> Result<TrialInfo> {
        let v = self.call(json!({"op": "ask"}))?;
        Ok(TrialInfo {
            number: v["number"].as_u64().unwrap_or(0) as usize,
            state: "running".into(),
            params: v["params"].as_object().cloned().unwrap_or_default(),
            value: None,
        })
    }

    /// Report a trial's accuracy after `epoch` epochs; whether the pruner stops it.
    pub fn report(&mut self, number: usize, epoch: usize, value: f64) -> Result<bool> {
        let v =
            self.call(json!({"op": "report", "number": number, "step": epoch, "value": value}))?;
        Ok(v["prune"].as_bool().unwrap_or(false))
    }

    pub fn tell(&mut self, number: usize, state: &str, value: Option<f64>) -> Result<()> {
        self.call(json!({"op": "tell", "number": number, "state": state, "value": value}))?;
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
