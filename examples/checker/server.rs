//! A `redis-server` the checker starts itself, on a free port. It dies with the checker:
//! a shell wrapper stops it when our end of the wrapper's stdin closes.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A server owned by the checker.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// redis-server's process id (for signals).
    pid: u32,
    /// The shell wrapper that stops it when its stdin closes.
    wrapper: Child,
    /// Our end of the wrapper's stdin.
    stdin: Option<ChildStdin>,
}

/// A free loopback port.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Server {
    /// Starts `redis-server` on `port` (no persistence, `DEBUG` allowed).
    pub fn start(port: u16) -> Result<Server, String> {
        let script = format!(
            "command -v redis-server >/dev/null || {{ echo missing; exit 1; }}; \
             redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
             --daemonize no --loglevel warning --enable-debug-command yes >/dev/null 2>&1 & \
             pid=$!; echo $pid; read _; kill -CONT $pid; kill $pid; wait $pid"
        );
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        let mut line = String::new();
        if let Some(out) = wrapper.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let pid = match line.trim() {
            "missing" | "" => {
                return Err(
                    "redis-server is not installed (apt-get install redis-server), \
                            or give --redis and --truth-url"
                        .into(),
                )
            }
            p => p
                .parse()
                .map_err(|_| format!("unexpected output from the wrapper: {p:?}"))?,
        };
        let server = Server {
            port,
            pid,
            stdin: wrapper.stdin.take(),
            wrapper,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url(0)).map_err(|e| e.to_string())?;
        loop {
            let answer = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            match answer {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "redis-server on port {} did not start: {e}",
                        self.port
                    ))
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Its URL, database `db`.
    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Sends a signal (`STOP`, `CONT`).
    pub fn signal(&self, sig: &str) -> Result<(), String> {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(format!("kill -{sig} {} failed", self.pid))
        }
    }

    fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.wrapper.wait();
    }

    /// Stops the server (its data is lost), waits `down`, starts a new one on the same port.
    pub fn restart(&mut self, down: Duration) -> Result<(), String> {
        self.stop();
        thread::sleep(down);
        *self = Server::start(self.port)?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
