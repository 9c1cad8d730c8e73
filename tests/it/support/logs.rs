//! Every log line of every in-process gateway in this test binary, captured at debug level
//! (Pingora's `log` records included), so tests can assert what never appears in logs.

use std::{
    io,
    sync::{Mutex, Once},
};

static LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LINES.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub fn capture() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_log::LogTracer::init();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(gateway::telemetry::filter("debug"))
            .with_writer(|| Capture)
            .with_ansi(false)
            .try_init();
    });
}

/// Everything logged so far.
pub fn captured() -> String {
    String::from_utf8_lossy(&LINES.lock().unwrap()).into_owned()
}
