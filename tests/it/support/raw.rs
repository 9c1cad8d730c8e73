//! Raw HTTP/1.1 over a TCP socket, for tests that must behave as no HTTP client library
//! would: stall mid-header or mid-body, trickle, never read, hang up half way.

use std::net::SocketAddr;

use tokio::{io::AsyncWriteExt, net::TcpStream};

pub async fn connect(addr: SocketAddr, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}
