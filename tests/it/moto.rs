//! The Glue + S3 emulator: moto's server from the test venv, started once per test binary by
//! `python/moto_server.py` on 127.0.0.1 (a free port). The launcher makes Glue `UpdateTable`
//! honour `VersionId` as real Glue does. It exits when this process ends (its stdin closes).
//! In CI a failure to start fails the tests; nothing is skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sales_history::{AwsCredentials, CatalogConfig, GlueConfig};

use crate::support::python;

pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub port: u16,
    // Kept open for the life of the test process; its EOF stops the server.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start(&[]))
}

impl Moto {
    /// Starts a server of its own (e.g. with `--record FILE`); it stops when dropped.
    pub fn start(args: &[&str]) -> Moto {
        let (child, stdin, port) = spawn_announcing("moto_server.py", args, "MOTO_PORT=");
        Moto {
            port,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    }
}

/// Starts `python/{script}` from the test venv with stdin piped (its EOF stops the process)
/// and waits for the line `{announce}<port>` on its stdout.
fn spawn_announcing(script: &str, args: &[&str], announce: &str) -> (Child, ChildStdin, u16) {
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python())
        .arg(&path)
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start python/{script}: {e}"));
    let stdout = child.stdout.take().expect("child stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the announced port");
    let port: u16 = line
        .trim()
        .strip_prefix(announce)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{script} did not print {announce}…, got {line:?}"));
    let stdin = child.stdin.take().expect("child stdin");
    (child, stdin, port)
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Ok(mut c) = self._child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates an S3 bucket (moto accepts an unsigned path-style PUT).
    pub fn create_bucket(&self, bucket: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "create bucket {bucket}: {resp}"
        );
    }

    pub fn glue_config(&self, bucket: &str) -> GlueConfig {
        GlueConfig::new(REGION, format!("s3://{bucket}/warehouse"))
            .glue_endpoint(self.endpoint())
            .s3_endpoint(self.endpoint())
            .credentials(AwsCredentials::new("testing", "testing-secret-key"))
    }

    /// A fresh bucket and the catalog config pointing at it.
    pub fn fresh(&self, bucket: &str) -> CatalogConfig {
        self.create_bucket(bucket);
        self.glue_config(bucket).into()
    }

    /// AWS SDK configuration for this emulator (region, endpoint, its test credentials).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let creds = aws_sdk_glue::config::Credentials::new(
            "testing",
            "testing-secret-key",
            None,
            None,
            "test",
        );
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(creds)
            .load()
            .await
    }

    /// An AWS SDK Glue client for checking what Glue holds.
    pub async fn glue_client(&self) -> aws_sdk_glue::Client {
        aws_sdk_glue::Client::new(&self.sdk_config().await)
    }
}

/// `python/fault_proxy.py`: a loopback HTTP proxy in front of the emulator's S3 that fails
/// chosen requests (rules set over its `/__faults__` control path).
pub struct FaultProxy {
    pub port: u16,
    _stdin: Mutex<ChildStdin>,
    child: Mutex<Child>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let (child, stdin, port) =
            spawn_announcing("fault_proxy.py", &["--upstream", upstream], "PROXY_PORT=");
        FaultProxy {
            port,
            _stdin: Mutex::new(stdin),
            child: Mutex::new(child),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn call(&self, method: &str, body: &str) -> serde_json::Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to proxy");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} /__faults__ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
            "proxy control: {resp}"
        );
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    /// Replaces the fault rules.
    pub fn set_rules(&self, rules: serde_json::Value) {
        self.call("POST", &serde_json::json!({ "rules": rules }).to_string());
    }

    /// Clears rules and counters.
    pub fn clear(&self) {
        self.call("DELETE", "");
    }

    /// Counters: `injected`, `requests`, `log`.
    pub fn stats(&self) -> serde_json::Value {
        self.call("GET", "")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Arguments for `python/pyiceberg_check.py CMD` against the emulator's Glue catalog.
pub fn pyiceberg_glue_args(cmd: &str, warehouse: &str, namespace: &str) -> Vec<String> {
    let endpoint = moto().endpoint();
    [
        cmd,
        "--catalog",
        "glue",
        "--glue-endpoint",
        &endpoint,
        "--s3-endpoint",
        &endpoint,
        "--region",
        REGION,
        "--warehouse",
        warehouse,
        "--namespace",
        namespace,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
