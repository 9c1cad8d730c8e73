//! Draining on SIGTERM, so that a rolling update loses no request.
//!
//! Pingora, left alone, closes every listener the moment SIGTERM arrives, the admin one
//! included: a load balancer (or kube-proxy, still routing to a pod it has not yet
//! withdrawn) then meets refused connections, and a readiness probe cannot tell "draining"
//! from "dead". Here, as Traefik's `requestAcceptGraceTimeout` and Envoy's drain do:
//!
//! 1. SIGTERM marks the gateway [`Drain`]ing at once: the admin `/healthz` answers 503
//!    `{"status":"draining"}`, and every proxied response says `Connection: close`, so
//!    keep-alive clients move to other replicas.
//! 2. For `server.shutdown_delay` the listeners stay open and requests are served as usual
//!    ([`DrainingShutdown`] holds the signal back from Pingora meanwhile).
//! 3. Pingora then closes the proxy listener and gives in-flight requests
//!    `server.grace_period`; the admin listener keeps answering "draining" until the process
//!    exits ([`UntilExit`]).
//!
//! A second SIGTERM ends the delay early; SIGINT stops at once, as before.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
#[cfg(unix)]
use pingora::server::ListenFds;
use pingora::{
    server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch},
    services::Service,
};
use tracing::info;

/// Whether the gateway is draining: true from a graceful shutdown signal until exit.
#[derive(Debug, Default)]
pub struct Drain(AtomicBool);

impl Drain {
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Wraps a shutdown signal: a graceful terminate starts the drain at once and reaches
/// Pingora (which closes the listeners) only `delay()` later. The gateway's `delay` reads
/// `server.shutdown_delay` from the running config when the signal arrives, so a reload
/// changes it.
pub struct DrainingShutdown {
    pub inner: Box<dyn ShutdownSignalWatch + Send + Sync>,
    pub drain: Arc<Drain>,
    pub delay: Box<dyn Fn() -> Duration + Send + Sync>,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingShutdown {
    async fn recv(&self) -> ShutdownSignal {
        let signal = self.inner.recv().await;
        if !matches!(signal, ShutdownSignal::GracefulTerminate) {
            return signal;
        }
        self.drain.start();
        let delay = (self.delay)();
        info!(
            shutdown_delay_ms = delay.as_millis() as u64,
            "draining: /healthz answers 503; listeners close after server.shutdown_delay"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => ShutdownSignal::GracefulTerminate,
            again = self.inner.recv() => match again {
                ShutdownSignal::FastShutdown => ShutdownSignal::FastShutdown,
                _ => ShutdownSignal::GracefulTerminate,
            },
        }
    }
}

/// Runs a service with a shutdown watch of its own that never fires, so that it keeps
/// accepting until the process exits instead of closing with the others. For the admin
/// listener: probes get "draining" (503) through the grace period, not a refused
/// connection.
pub struct UntilExit<S>(pub S);

#[async_trait]
impl<S: Service> Service for UntilExit<S> {
    async fn start_service(
        &mut self,
        #[cfg(unix)] fds: Option<ListenFds>,
        _shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        // The sender lives as long as the service: a dropped sender would read as a
        // shutdown.
        let (_never, watch) = tokio::sync::watch::channel(false);
        self.0
            .start_service(
                #[cfg(unix)]
                fds,
                watch,
                listeners_per_fd,
            )
            .await;
    }

    fn name(&self) -> &str {
        self.0.name()
    }

    fn threads(&self) -> Option<usize> {
        self.0.threads()
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        sync::{Mutex, mpsc},
        time::{Instant, sleep},
    };

    use super::*;

    /// Signals sent by the test, as the kernel would send them.
    struct Signals(Mutex<mpsc::UnboundedReceiver<ShutdownSignal>>);

    #[async_trait]
    impl ShutdownSignalWatch for Signals {
        async fn recv(&self) -> ShutdownSignal {
            let next = self.0.lock().await.recv().await;
            next.unwrap_or(ShutdownSignal::FastShutdown)
        }
    }

    fn draining(delay: Duration) -> (mpsc::UnboundedSender<ShutdownSignal>, DrainingShutdown) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shutdown = DrainingShutdown {
            inner: Box::new(Signals(Mutex::new(receiver))),
            drain: Arc::new(Drain::default()),
            delay: Box::new(move || delay),
        };
        (sender, shutdown)
    }

    #[tokio::test(start_paused = true)]
    async fn a_graceful_terminate_drains_at_once_and_reaches_pingora_after_the_delay() {
        let (sender, shutdown) = draining(Duration::from_secs(5));
        let drain = shutdown.drain.clone();
        let started = Instant::now();
        let signal = tokio::spawn(async move { shutdown.recv().await });
        sender.send(ShutdownSignal::GracefulTerminate).unwrap();

        sleep(Duration::from_millis(1)).await;
        assert!(drain.is_draining());
        assert!(
            !signal.is_finished(),
            "Pingora was told before the delay ran out"
        );

        let signal = signal.await.unwrap();
        assert!(matches!(signal, ShutdownSignal::GracefulTerminate));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_shutdown_during_the_delay_stops_at_once() {
        let (sender, shutdown) = draining(Duration::from_secs(5));
        let started = Instant::now();
        let signal = tokio::spawn(async move { shutdown.recv().await });
        sender.send(ShutdownSignal::GracefulTerminate).unwrap();
        sleep(Duration::from_secs(1)).await;
        sender.send(ShutdownSignal::FastShutdown).unwrap();

        let signal = signal.await.unwrap();
        assert!(matches!(signal, ShutdownSignal::FastShutdown));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_shutdown_passes_through_without_draining() {
        let (sender, shutdown) = draining(Duration::from_secs(5));
        let drain = shutdown.drain.clone();
        sender.send(ShutdownSignal::FastShutdown).unwrap();
        assert!(matches!(
            shutdown.recv().await,
            ShutdownSignal::FastShutdown
        ));
        assert!(!drain.is_draining());
    }
}
