//! The sockets: one UDP socket and one TCP listener on the same address, both answering from
//! the shared [`Records`](crate::Records) through [`wire::respond`].
//!
//! UDP requests are answered in the receive loop: resolving is a lookup in memory, cheaper
//! than spawning a task. TCP (RFC 7766) gets a task per connection, several length-prefixed
//! queries per connection, an idle timeout, and a cap on open connections so a client that
//! opens many and sends nothing cannot exhaust us.

use crate::watch::{read, Shared};
use crate::wire::{respond, Transport};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// A TCP connection that sends nothing for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Most TCP connections served at once; more wait in the listen backlog.
const MAX_TCP_CONNECTIONS: usize = 256;

/// Bind UDP and TCP on `addr`. With port 0 both get the same port: UDP picks it, TCP takes
/// it, and if TCP finds it taken we try again with another.
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last_err = None;
    for _ in 0..10 {
        let udp = UdpSocket::bind(addr).await?;
        let local = udp.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last_err.map_or_else(|| anyhow::anyhow!("cannot bind DNS sockets"), Into::into))
}

/// Serve UDP until `shutdown` completes.
pub(crate) async fn serve_udp(
    socket: UdpSocket,
    records: Shared,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // The largest UDP datagram; anything bigger than a query is malformed but must be read.
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // E.g. ICMP errors reported on the socket; pause so a persistent error
                    // does not spin.
                    tracing::debug!(error = %e, "dns: udp receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let reply = respond(&read(&records), &buf[..n], Transport::Udp);
        if let Some(reply) = reply {
            if let Err(e) = socket.send_to(&reply, peer).await {
                tracing::debug!(error = %e, %peer, "dns: udp send failed");
            }
        }
    }
}

/// Serve TCP until `shutdown` completes; open connections are dropped then.
pub(crate) async fn serve_tcp(
    listener: TcpListener,
    records: Shared,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::debug!(error = %e, "dns: tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let records = records.clone();
        connections.spawn(async move {
            if let Err(e) = connection(stream, records).await {
                tracing::debug!(error = %e, %peer, "dns: tcp connection ended");
            }
            drop(permit);
        });
        // Reap finished tasks so the set does not grow with every connection ever made.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// Length-prefixed queries on one connection until EOF, idle timeout or error.
async fn connection(mut stream: TcpStream, records: Shared) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65535];
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => usize::from(r?),
        };
        let packet = &mut buf[..len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(packet))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "partial query"))??;
        let Some(reply) = respond(&read(&records), packet, Transport::Tcp) else { continue };
        let Ok(reply_len) = u16::try_from(reply.len()) else { continue };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
