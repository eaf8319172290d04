//! TLS 1.3 connections for the load generator.
//!
//! The bench measures servers, it does not authenticate them: it accepts any
//! server certificate (Sotto's self-signed one, or the IRC servers' snakeoil
//! certificates) without pinning. It still verifies the TLS 1.3 handshake
//! signature, so the handshake costs what a real client's does.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A client's TLS stream.
pub type Stream = TlsStream<TcpStream>;

/// How long one TCP connect plus TLS handshake may take. Generous: a server
/// with a short listen backlog drops SYNs under a connection storm, and the
/// kernel retries them after 1, 3, 7, 15 and 31 s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections being set up at once per process. IRC servers may have
/// short listen backlogs (ngIRCd drops SYNs beyond a few dozen pending), so
/// they get 16 unless `SOTTO_BENCH_IRC_CONNECTS` says otherwise (InspIRCd
/// takes about a second per registration and copes with many more); Sotto
/// gets enough to keep both cores busy.
pub fn connect_concurrency(irc: bool) -> usize {
    if !irc {
        return 256;
    }
    std::env::var("SOTTO_BENCH_IRC_CONNECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(16)
}

/// Everything needed to open connections to one server, or to the nodes
/// of a cluster (connections go to each in turn).
#[derive(Clone)]
pub struct Connector {
    /// The server's addresses (loopback): one, or a cluster's nodes.
    pub addrs: Vec<SocketAddr>,
    /// The node the next connection goes to.
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Shared rustls config (TLS 1.3 only, ring).
    tls: TlsConnector,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// Resolves `--server`: one `HOST[:PORT]`, or a cluster's nodes separated
/// by commas, each to a loopback address.
pub fn resolve_all(servers: &str, irc: bool) -> anyhow::Result<Vec<SocketAddr>> {
    servers.split(',').map(|s| resolve(s.trim(), irc)).collect()
}

/// Resolves `HOST[:PORT]` to a loopback address; the port defaults to
/// Sotto's 7443 or IRC's TLS port 6697.
pub fn resolve(server: &str, irc: bool) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    let default_port = if irc { 6697 } else { 7443 };
    let with_port = if server.parse::<SocketAddr>().is_ok()
        || server
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
    {
        server.to_owned()
    } else {
        format!("{server}:{default_port}")
    };
    let mut addrs = with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving --server {server}"))?;
    addrs
        .find(|a| a.ip().is_loopback())
        .with_context(|| format!("--server {server} is not a loopback address"))
}

impl Connector {
    /// A connector for `addrs`, which must be loopback addresses.
    pub fn new(addrs: Vec<SocketAddr>) -> anyhow::Result<Self> {
        anyhow::ensure!(!addrs.is_empty(), "no server address");
        for addr in &addrs {
            anyhow::ensure!(
                addr.ip().is_loopback(),
                "the bench only runs against loopback servers, not {addr}"
            );
        }
        // The client library's TLS 1.3 config; its verifier records the
        // certificate (nobody pins it here) and checks handshake signatures.
        let (config, _seen) = sotto_client::tls::client_config()?;
        Ok(Self {
            addrs,
            next: Default::default(),
            tls: TlsConnector::from(config),
        })
    }

    /// Connects and completes the TLS handshake. `recv_buffer` sets a small
    /// socket receive buffer (for the stalled client of `slow-consumer`).
    pub async fn connect(&self, recv_buffer: Option<u32>) -> anyhow::Result<Stream> {
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = self.addrs[turn % self.addrs.len()];
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("creating a socket")?;
        if let Some(size) = recv_buffer {
            socket
                .set_recv_buffer_size(size)
                .context("setting SO_RCVBUF")?;
        }
        let fut = async {
            let tcp = socket
                .connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
            let name = ServerName::IpAddress(addr.ip().into());
            self.tls.connect(name, tcp).await.context("TLS handshake")
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
            .await
            .context("TCP connect + TLS handshake timed out")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_loopback_only_with_default_ports() {
        assert_eq!(
            resolve("127.0.0.1:9000", false).unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(resolve("127.0.0.1", false).unwrap().port(), 7443);
        assert_eq!(resolve("127.0.0.1", true).unwrap().port(), 6697);
        assert_eq!(resolve("[::1]:7000", false).unwrap().port(), 7000);
        assert_eq!(resolve("::1", true).unwrap().port(), 6697);
        assert!(resolve("localhost:7443", false).is_ok());
        assert!(resolve("192.0.2.1:7443", false).is_err());
    }

    #[test]
    fn connector_refuses_remote_servers() {
        assert!(Connector::new(vec!["192.0.2.1:7443".parse().unwrap()]).is_err());
        assert!(Connector::new(vec!["127.0.0.1:7443".parse().unwrap()]).is_ok());
        assert!(Connector::new(Vec::new()).is_err());
        let nodes = resolve_all("127.0.0.1:7443, 127.0.0.1:7444", false).unwrap();
        assert_eq!(nodes.len(), 2);
        assert!(resolve_all("127.0.0.1:7443,192.0.2.1:7443", false).is_err());
    }
}
