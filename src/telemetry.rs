//! Logging set-up shared by the binary and the tests: `tracing` with Pingora's `log`
//! records bridged in, and a filter that keeps secrets out whatever `RUST_LOG` says.

use tracing_subscriber::{EnvFilter, filter::Directive};

/// Pingora's debug records dump whole request and response headers (`Authorization`
/// included), so its crates are capped at info whatever the user asks for.
const SECRET_SAFE_CAPS: [&str; 4] = [
    "pingora_proxy=info",
    "pingora_core=info",
    "pingora_pool=info",
    "pingora_cache=info",
];

/// `RUST_LOG` if set (else `default`), with the caps above applied last.
pub fn filter(default: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    for cap in SECRET_SAFE_CAPS {
        if let Ok(directive) = cap.parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber (text or JSON lines on stderr). Idempotent.
pub fn init(json: bool) {
    let _ = tracing_log::LogTracer::init();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter("info"))
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
