//! Running services and stopping them: the piece `travel serve` and `travel up` share. A set
//! of services is started on already-bound listeners, watched (a service never ends on its
//! own, so one that does is a failure), and stopped gracefully on request. Also the process's
//! stop signals (Ctrl-C, SIGTERM), listened to from start-up on, and told apart because
//! `travel up` stops the gateway faster on Ctrl-C.

use std::io;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{AppState, Service};

/// Services serving until [`RunningServices::stop`].
pub struct RunningServices {
    stop: watch::Sender<bool>,
    tasks: JoinSet<(Service, io::Result<()>)>,
}

impl RunningServices {
    /// Serve each listener with its service, all on one shared state. Needs a Tokio runtime.
    pub fn start(state: &AppState, listeners: Vec<(Service, TcpListener)>) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (service, listener) in listeners {
            let mut rx = stop_rx.clone();
            let stopped = async move {
                // Either a `true` or a dropped sender means stop.
                let _ = rx.wait_for(|stop| *stop).await;
            };
            let state = state.clone();
            tasks.spawn(async move {
                (
                    service,
                    crate::serve(service, listener, state, stopped).await,
                )
            });
        }
        Self { stop, tasks }
    }

    /// Completes when a service ends without being told to (always a failure), saying which
    /// and why. Never completes while they all run.
    pub async fn unexpected_exit(&mut self) -> String {
        match self.tasks.join_next().await {
            Some(Ok((service, Ok(())))) => format!("the {} service stopped", service.name()),
            Some(Ok((service, Err(e)))) => format!("the {} service failed: {e}", service.name()),
            Some(Err(e)) => format!("a service task failed: {e}"),
            None => std::future::pending().await,
        }
    }

    /// Stop accepting connections, finish in-flight requests, wait for every service.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while let Some(done) = self.tasks.join_next().await {
            match done {
                Ok((_, Ok(()))) => {}
                Ok((service, Err(e))) => {
                    tracing::error!(service = service.name(), error = %e, "service error");
                }
                Err(e) => tracing::error!(error = %e, "service task failed"),
            }
        }
    }
}

/// Which stop signal arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl StopSignal {
    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }
}

/// The process's stop signals, listened to from [`StopSignals::install`] on: from then on
/// SIGINT and SIGTERM no longer end the process by themselves, and one that arrives before
/// [`StopSignals::recv`] is called is kept, not lost.
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Start listening. Needs a Tokio runtime.
    pub fn install() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Completes on the next Ctrl-C or SIGTERM.
    pub async fn recv(&mut self) -> StopSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => StopSignal::Interrupt,
                _ = self.terminate.recv() => StopSignal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            StopSignal::Interrupt
        }
    }
}
