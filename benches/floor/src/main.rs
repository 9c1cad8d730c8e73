//! The floor of the gateway benchmark: a bare Pingora 0.9 HTTP/1 proxy whose only hook is
//! `upstream_peer`, answering every request with the same fixed `HttpPeer`. Run beside the
//! gateway under the same load, its CPU per request is what Pingora itself costs, so the
//! gateway's figure minus this one is what the gateway adds (issue #14, goal 1).
//!
//! Deliberately nothing else: no timeouts on the peer, no header changes, no logging, no
//! metrics. The server settings are Pingora's defaults but for the worker thread count, as
//! the gateway's are (`src/server.rs`: threads, grace periods).
//!
//! Usage: `floor LISTEN UPSTREAM [THREADS [WORK_STEALING]]`, e.g. `floor 127.0.0.1:8090
//! 127.0.0.1:8081 1 false`; WORK_STEALING (`true`, Pingora's default, or `false`) is the
//! gateway's `server.work_stealing`, so the two can be compared setting for setting.

use std::{error::Error, net::SocketAddr, process::ExitCode};

use async_trait::async_trait;
use pingora::{
    proxy::{ProxyHttp, Session, http_proxy_service_with_name},
    server::{Server, configuration::ServerConf},
    upstreams::peer::HttpPeer,
};

// Only with `--features jemalloc`: the gateway links jemalloc (src/main.rs), and the floor
// built this way tells how much of the gap between them is the allocator's.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Floor {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Args {
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
    work_stealing: bool,
}

fn parse() -> Result<Args, Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, threads, work_stealing) = match args.as_slice() {
        [l, u] => (l, u, "1", "true"),
        [l, u, t] => (l, u, t.as_str(), "true"),
        [l, u, t, w] => (l, u, t.as_str(), w.as_str()),
        _ => return Err("usage: floor LISTEN UPSTREAM [THREADS [WORK_STEALING]]".into()),
    };
    let listen = listen
        .parse()
        .map_err(|e| format!("LISTEN {listen:?}: {e}"))?;
    let upstream = upstream
        .parse()
        .map_err(|e| format!("UPSTREAM {upstream:?}: {e}"))?;
    let threads = threads
        .parse()
        .ok()
        .filter(|t| (1..=64).contains(t))
        .ok_or_else(|| format!("THREADS {threads:?}: want a number from 1 to 64"))?;
    let work_stealing = work_stealing
        .parse()
        .map_err(|_| format!("WORK_STEALING {work_stealing:?}: want true or false"))?;
    Ok(Args {
        listen,
        upstream,
        threads,
        work_stealing,
    })
}

fn main() -> ExitCode {
    let Args {
        listen,
        upstream,
        threads,
        work_stealing,
    } = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::from(2);
        }
    };
    let conf = ServerConf {
        threads,
        work_stealing,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        http_proxy_service_with_name(&server.configuration, Floor { upstream }, "floor");
    proxy.add_tcp(&listen.to_string());
    server.add_service(proxy);
    server.run_forever()
}
