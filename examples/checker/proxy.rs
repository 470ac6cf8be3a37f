//! A loopback TCP proxy between the workers and Redis that can drop every connection or
//! stall them (hold the bytes in both directions) on command.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The proxy's shared state.
pub struct Proxy {
    /// The port workers connect to.
    pub port: u16,
    /// True while every byte is held.
    stalled: Arc<AtomicBool>,
    /// Both sockets of every connection, to close them all at once.
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: String) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stalled = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (s, c) = (stalled.clone(), conns.clone());
        thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let pair = (client.try_clone(), server.try_clone());
                    let (Ok(client2), Ok(server2)) = pair else {
                        continue;
                    };
                    if let Ok(mut list) = c.lock() {
                        list.retain(|t| t.peer_addr().is_ok());
                        if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                            list.push(a);
                            list.push(b);
                        }
                    }
                    pump(client, server2, s.clone());
                    pump(server, client2, s.clone());
                }
            })?;
        Ok(Proxy {
            port,
            stalled,
            conns,
        })
    }

    /// Closes every connection open through the proxy.
    pub fn drop_all(&self) -> usize {
        let Ok(mut list) = self.conns.lock() else {
            return 0;
        };
        let n = list.len() / 2;
        for s in list.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        n
    }

    /// Holds (true) or releases (false) every byte in both directions.
    pub fn stall(&self, yes: bool) {
        self.stalled.store(yes, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` on a thread of its own, holding bytes while stalled.
fn pump(mut from: TcpStream, mut to: TcpStream, stalled: Arc<AtomicBool>) {
    let _ = thread::Builder::new()
        .name("proxy-pump".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                while stalled.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(5));
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
}
