//! `admin:`: the admin listener (metrics, health, breaker state, the live page) and who may
//! use it: beyond loopback, a bearer token from the environment unless `open: true`.

use super::{Env, Problems};
use crate::config::{ADMIN_OPENABLE_PATHS, AdminSettings, Secret, file::AdminConfig};

/// Shortest admin token accepted: 128 bits of hex.
const MIN_TOKEN_BYTES: usize = 16;

pub(super) fn compile(
    problems: &mut Problems<'_>,
    config: &AdminConfig,
    env: Env<'_>,
) -> Option<AdminSettings> {
    let mut part = problems.part("admin");
    let listen = part.listen_addr("listen", &config.listen);
    let token = match &config.token_env {
        None => None,
        Some(name) => match env(name) {
            None => {
                part.add(
                    "token_env",
                    format!("the environment variable {name} is not set"),
                );
                None
            }
            Some(value) if value.trim().len() < MIN_TOKEN_BYTES => {
                part.add(
                    "token_env",
                    format!("the token in {name} is shorter than {MIN_TOKEN_BYTES} bytes"),
                );
                None
            }
            Some(value) => Some(Secret::new(value.trim().as_bytes())),
        },
    };
    if config.open && config.token_env.is_some() {
        part.add(
            "open",
            "open: true and token_env contradict each other; keep one",
        );
    }
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && config.token_env.is_none()
        && !config.open
    {
        part.add(
            "listen",
            format!(
                "{addr} is reachable from other machines: set admin.token_env to require a bearer token, or admin.open: true to run it open on purpose"
            ),
        );
    }
    let mut open_paths = Vec::new();
    for (index, path) in config.open_paths.iter().enumerate() {
        match ADMIN_OPENABLE_PATHS.iter().find(|p| **p == path.as_str()) {
            Some(known) => open_paths.push(*known),
            None => part.add(
                &format!("open_paths[{index}]"),
                format!("{path:?} cannot be opened; only /healthz and /metrics can"),
            ),
        }
    }
    part.passed()?;
    Some(AdminSettings {
        listen: listen?,
        token,
        open_paths,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(admin: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let text = format!(
            "admin: {admin}\nupstreams:\n  u: {{ backends: [\"127.0.0.1:1\"] }}\nroutes:\n  - {{ path: /a, upstream: u, auth: none }}\n"
        );
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse_with_env(&text, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .map_err(|errors| format!("{errors:?}"))
    }

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn loopback_needs_no_token() {
        let config = parse("{ listen: \"127.0.0.1:9091\" }", &[]).unwrap();
        assert!(config.admin.token.is_none());
        assert_eq!(config.admin.open_paths, ["/healthz"]);
        assert!(!config.admin.is_open_beyond_loopback());
    }

    #[test]
    fn beyond_loopback_a_token_or_an_explicit_open_is_required() {
        let error = parse("{ listen: \"0.0.0.0:9091\" }", &[]).unwrap_err();
        assert!(error.contains("admin.token_env"), "{error}");
        assert!(error.contains("line: Some(1)"), "{error}");

        let open = parse("{ listen: \"0.0.0.0:9091\", open: true }", &[]).unwrap();
        assert!(open.admin.is_open_beyond_loopback());

        let guarded = parse(
            "{ listen: \"0.0.0.0:9091\", token_env: ADMIN_TOKEN }",
            &[("ADMIN_TOKEN", TOKEN)],
        )
        .unwrap();
        assert_eq!(guarded.admin.token.unwrap().expose(), TOKEN.as_bytes());
    }

    #[test]
    fn a_missing_or_short_token_is_an_error_that_never_shows_it() {
        let missing = parse("{ token_env: ADMIN_TOKEN }", &[]).unwrap_err();
        assert!(missing.contains("ADMIN_TOKEN is not set"), "{missing}");
        let short = parse("{ token_env: ADMIN_TOKEN }", &[("ADMIN_TOKEN", "s3cr3t")]).unwrap_err();
        assert!(short.contains("shorter than 16"), "{short}");
        assert!(!short.contains("s3cr3t"), "{short}");
    }

    #[test]
    fn only_health_and_metrics_can_be_opened_and_open_excludes_a_token() {
        let error = parse("{ open_paths: [/healthz, /admin/config] }", &[]).unwrap_err();
        assert!(error.contains("admin.open_paths[1]"), "{error}");
        let both = parse(
            "{ token_env: ADMIN_TOKEN, open: true }",
            &[("ADMIN_TOKEN", TOKEN)],
        )
        .unwrap_err();
        assert!(both.contains("contradict"), "{both}");
    }
}
