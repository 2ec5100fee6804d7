//! A TCP proxy of the tests' own between the service and PostgreSQL, to
//! make database faults happen on demand without touching the shared
//! server: `Down` is a restart as a client sees it (every connection cut,
//! new ones refused), `Stalled` is a database reachable but not answering
//! (connections accepted, nothing forwarded). A fault no real part can be
//! made to have on cue here; the database behind it is real.

use tokio::{net::TcpListener, sync::watch, task::JoinSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forwarding,
    Down,
    Stalled,
}

pub struct TcpProxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    _task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// A proxy on a free port of 127.0.0.1 to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("bound").port();
        let (mode, rx) = watch::channel(Mode::Forwarding);
        let task = tokio::spawn(serve(listener, port, upstream, rx));
        Self {
            port,
            mode,
            _task: task,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Accepts and forwards while `Forwarding`; on `Down` cuts every connection
/// and closes the port until the mode changes; on `Stalled` accepts but
/// forwards nothing, old connections or new, holding what was sent.
async fn serve(
    listener: TcpListener,
    port: u16,
    upstream: String,
    mut mode: watch::Receiver<Mode>,
) {
    let mut listener = Some(listener);
    let mut pipes = JoinSet::new();
    loop {
        let now = *mode.borrow_and_update();
        if now == Mode::Down {
            pipes.abort_all();
            listener = None;
        } else if listener.is_none() {
            listener = TcpListener::bind(("127.0.0.1", port)).await.ok();
        }
        let Some(open) = &listener else {
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            accepted = open.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let (upstream, mode) = (upstream.clone(), mode.clone());
                pipes.spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        one_way(client_read, server_write, mode.clone()),
                        one_way(server_read, client_write, mode),
                    );
                });
            }
        }
    }
}

/// Copies `from` to `to` chunk by chunk; a chunk read while stalled waits
/// (a black hole: TCP keeps what it was given) until forwarding resumes.
async fn one_way(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            let now = *mode.borrow_and_update();
            match now {
                Mode::Forwarding => break,
                Mode::Down => return,
                Mode::Stalled => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
