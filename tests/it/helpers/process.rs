//! The `herald-gateway` binary run as an operator runs it, for tests that need a
//! real process: restarts, SIGKILL, startup refusals, stdout.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A running gateway process; killed with SIGKILL when dropped.
pub struct GatewayProcess {
    pub child: Child,
    pub address: String,
    /// The log lines up to and including "listening".
    pub startup_logs: Vec<String>,
    /// Every later stderr line (the JSON logs), as they arrive.
    pub logs: mpsc::Receiver<String>,
    /// Every stdout line (console deliveries), as they arrive.
    pub stdout: mpsc::Receiver<String>,
}

/// The command with a clean Herald environment: only what `vars` sets.
pub fn gateway_command(data_dir: &Path, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald-gateway"));
    for var in [
        "SNS_TOPIC_ARN",
        "WHATSAPP_ACCESS_TOKEN",
        "WHATSAPP_PHONE_NUMBER_ID",
        "DELIVERY",
        "API_KEY",
        "RUST_LOG",
        "LOG_LEVEL",
        "LOG_FORMAT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("HERALD_DATA_DIR", data_dir)
        .env("API_KEYS", format!("ops:{}", super::KEY));
    // The binary loads .env from its working directory; run it somewhere without one.
    cmd.current_dir(data_dir.parent().unwrap_or(data_dir));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn forward(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl GatewayProcess {
    /// Starts the gateway and waits for its "listening" log line.
    pub fn start(data_dir: &Path, vars: &[(&str, &str)]) -> Self {
        let mut child = gateway_command(data_dir, vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald-gateway starts");
        let logs = forward(child.stderr.take().unwrap());
        let stdout = forward(child.stdout.take().unwrap());
        let mut seen = Vec::new();
        let address = loop {
            let line = logs
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no 'listening' line; logs: {seen:#?}"));
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "listening"
            {
                let addr = v["addr"].as_str().unwrap().to_owned();
                seen.push(line);
                break format!("http://{addr}");
            }
            seen.push(line);
        };
        Self {
            child,
            address,
            startup_logs: seen,
            logs,
            stdout,
        }
    }

    /// Kills the process with SIGKILL: no chance to flush or clean up.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Waits for the next stdout line.
    pub fn next_stdout_line(&self, within: Duration) -> Option<String> {
        self.stdout.recv_timeout(within).ok()
    }
}

/// The consumer binary as an SQS poller of `queue_url`, keeping statuses in
/// `table`, with its log to `log`; started with `vars` added (provider
/// settings) and nothing else of this process's `DELIVERY`.
pub fn consumer(
    queue_url: &str,
    table: &str,
    vars: &[(&str, String)],
    log: &tempfile::NamedTempFile,
) -> KilledOnDrop {
    let child = Command::new(env!("CARGO_BIN_EXE_herald-consumer"))
        .env("SQS_QUEUE_URL", queue_url)
        .env("STATUS_TABLE", table)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("DELIVERY")
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("the log file reopens"))
        .spawn()
        .expect("the consumer binary starts");
    KilledOnDrop::new(child)
}

/// Any child process, killed with SIGKILL when dropped: a test that fails
/// while waiting for it does not leave it running.
pub struct KilledOnDrop(Option<Child>);

impl KilledOnDrop {
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// Kills the process now; what it wrote to its piped streams.
    pub fn kill(mut self) -> std::process::Output {
        let mut child = self.0.take().expect("not killed yet");
        let _ = child.kill();
        child.wait_with_output().expect("reaped")
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
