//! Every invalid config under `tests/fixtures/invalid/` is rejected, and the report names
//! each problem with its line and YAML path. Each fixture lists what it expects in
//! `# expect: ...` lines at its top.

use std::path::Path;

use gateway::Config;

#[test]
fn every_invalid_fixture_is_rejected_with_the_expected_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no # expect line",
            path.display()
        );
        let report = match Config::load(&path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(errors) => errors.to_string(),
        };
        for line in &expected {
            assert!(
                report.contains(line),
                "{}: expected {line:?} in:\n{report}",
                path.display()
            );
        }
        assert_eq!(
            report.lines().count() - 1,
            expected.len(),
            "{}: unexpected extra problems:\n{report}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures found");
}

#[test]
fn the_shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let env = |name: &str| (name == "JWT_SECRET").then(|| "s".repeat(32));
    let config = Config::parse_with_env(&text, &env).unwrap();
    let auth = config.auth.as_ref().unwrap();
    assert_eq!(&*auth.upstream, "users");
    assert_eq!(auth.path, "/auth");
    assert_eq!(auth.cache.capacity, 100_000);
    assert_eq!(config.server.listen.port(), 8888);
    let users = config.upstream("users").unwrap();
    assert_eq!(users.policy.consecutive_failures, Some(5));
    assert_eq!(users.policy.failure_rate, Some(0.5));
    assert!(users.failure_statuses.contains(503));
    assert!(!users.failure_statuses.contains(404));
}

#[test]
fn defaults_fill_every_omitted_key() {
    let config = Config::parse(
        "upstreams:\n  a: { backends: [127.0.0.1:1] }\nroutes:\n  - { path: /, upstream: a, auth: none }\n",
    )
    .unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8888");
    assert_eq!(config.server.threads, 2);
    assert_eq!(config.server.grace_period.as_secs(), 5);
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9091");
    assert_eq!(config.server.client_header_timeout.as_secs(), 10);
    assert_eq!(config.server.client_body_timeout.as_secs(), 10);
    assert_eq!(config.server.client_write_timeout.as_secs(), 60);
    let route = &config.routes[0];
    assert_eq!(route.body.max, 64 * 1024, "the most a buffered body can be");
    assert!(route.body.buffered);
    let a = &config.upstreams[0];
    assert_eq!(a.connect_timeout.as_secs(), 1);
    assert_eq!(a.read_timeout.as_secs(), 5);
    assert_eq!(a.connect_retries, 1);
    assert_eq!(&*a.breaker, "default");
    let p = &a.policy;
    assert_eq!(p.minimum_calls, 10);
    assert_eq!(p.window.as_secs(), 30);
    assert_eq!(p.slow_call_duration.as_secs(), 2);
    assert_eq!(p.slow_call_rate, Some(1.0));
    assert_eq!(p.open_for.as_secs(), 10);
    assert_eq!(p.max_open_for.as_secs(), 300);
    assert_eq!(p.half_open_probes, 3);
    assert_eq!(
        a.failure_statuses.iter().collect::<Vec<_>>(),
        [500, 502, 503, 504]
    );
    assert_eq!(a.limit.max_in_flight, None);
    assert_eq!(a.limit.max_queued, 0);
    assert_eq!(a.limit.queue_timeout.as_secs(), 1);
}

#[test]
fn the_exchange_limit_defaults_to_what_the_users_service_verifies_in_half_its_read_timeout() {
    let env = |name: &str| (name == "JWT_SECRET").then(|| "s".repeat(32));
    let parse = |users: &str| {
        let text = format!(
            "upstreams:\n  users: {{ backends: [127.0.0.1:1]{users} }}\nauth:\n  token_endpoint: {{ upstream: users }}\nroutes:\n  - {{ path: /, upstream: users }}\n"
        );
        Config::parse_with_env(&text, &env)
            .unwrap()
            .auth
            .unwrap()
            .exchange_limit
    };
    // 5s read timeout: 2.5s of 35 ms verifications on one core.
    let limit = parse("");
    assert_eq!(limit.max_in_flight, Some(71));
    assert_eq!(limit.max_queued, 71);
    assert_eq!(limit.queue_timeout.as_secs(), 1);
    assert_eq!(parse(", read_timeout: 1s").max_in_flight, Some(14));
    assert_eq!(parse(", read_timeout: 10ms").max_in_flight, Some(1));
}

/// A deployment's config (compose, Kubernetes) compiles but for its backend host names,
/// which resolve only inside that deployment's network.
fn valid_but_for_the_host_names(file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(path).unwrap();
    let env = |name: &str| match name {
        "JWT_SECRET" => Some("s".repeat(32)),
        "REDIS_URL" => Some("redis://:hunter2@redis:6379/0".to_owned()),
        "GATEWAY_ADMIN_TOKEN" | "ADMIN_TOKEN" => Some("t".repeat(32)),
        _ => None,
    };
    let errors = match Config::parse_with_env(&text, &env) {
        Ok(_) => return,
        Err(errors) => errors,
    };
    for error in &errors {
        assert!(
            error.path.starts_with("upstreams.")
                && error.path.contains(".backends[")
                && (error.message.contains("cannot resolve")
                    || error.message.contains("resolves to no address")),
            "{file}: unexpected problem: {error}"
        );
    }
}

#[test]
fn the_compose_config_is_valid_but_for_the_compose_host_names() {
    valid_but_for_the_host_names("deploy/compose/gateway.yaml");
}

#[test]
fn the_kubernetes_config_is_valid_but_for_the_service_names() {
    valid_but_for_the_host_names("deploy/kubernetes/base/gateway.yaml");
}

const REDIS_CONFIG: &str = "upstreams:\n  a: { backends: [\"127.0.0.1:9\"] }\nroutes:\n  - { path: /a, upstream: a, auth: none }\n";

fn redis_config(cache: &str, redis_url: Option<&str>) -> Result<Config, String> {
    let text = format!("{REDIS_CONFIG}cache: {cache}\n");
    let env = |name: &str| (name == "REDIS_URL").then(|| redis_url.map(str::to_owned))?;
    Config::parse_with_env(&text, &env).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn redis_url_env_takes_the_url_from_the_environment_and_never_shows_it() {
    let url = "redis://:hunter2@cache.internal:6379/0";
    let config = redis_config("{ store: redis, redis_url_env: REDIS_URL }", Some(url)).unwrap();
    match &config.cache.store {
        gateway::config::StoreSettings::Redis { url: secret, .. } => {
            assert_eq!(secret.expose_str(), Some(url));
        }
        other => panic!("not a Redis store: {other:?}"),
    }
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn redis_url_env_unset_is_a_config_error_naming_the_variable() {
    let errors = redis_config("{ store: redis, redis_url_env: REDIS_URL }", None).unwrap_err();
    assert!(
        errors.ends_with("cache.redis_url_env: the environment variable REDIS_URL is not set"),
        "{errors}"
    );
    assert_eq!(errors.lines().count(), 1, "{errors}");
}

#[test]
fn a_redis_url_that_is_no_url_is_refused_without_echoing_it() {
    let errors = redis_config(
        "{ store: redis, redis_url_env: REDIS_URL }",
        Some("hunter2@cache.internal:6379"),
    )
    .unwrap_err();
    assert!(
        errors.contains("cache.redis_url_env: the value of REDIS_URL is not a Redis URL"),
        "{errors}"
    );
    assert!(!errors.contains("hunter2"), "{errors}");
}

const PASSWORD: &str = "s3cr3t-Pw";

/// The report of a config that must be refused, checked to hold no password.
fn refused_without_the_password(cache: &str) -> String {
    let errors = redis_config(cache, None).unwrap_err();
    assert!(!errors.contains(PASSWORD), "{errors}");
    assert!(!errors.contains("s3cr3t"), "{errors}");
    errors
}

#[test]
fn a_redis_url_with_a_wrong_scheme_in_the_file_is_refused_without_echoing_it() {
    let errors = refused_without_the_password(&format!(
        "{{ store: redis, redis_url: \"http://:{PASSWORD}@cache.internal:6379/0\" }}"
    ));
    assert!(
        errors.contains("cache.redis_url: the value is not a Redis URL"),
        "{errors}"
    );
}

#[test]
fn a_redis_url_that_does_not_parse_is_a_config_error_without_its_password() {
    for url in [
        format!("redis://:{PASSWORD}@cache.internal:notaport/0"),
        format!("redis://:{PASSWORD}@cache.internal:6379/notadb"),
        format!("redis://:{PASSWORD}@/0"),
    ] {
        let errors =
            refused_without_the_password(&format!("{{ store: redis, redis_url: \"{url}\" }}"));
        assert!(
            errors.contains("cache.redis_url: the value is not a valid Redis URL"),
            "{url}: {errors}"
        );
        assert!(
            errors.starts_with("5: cache.redis_url"),
            "no line in {errors}"
        );
    }
}

/// serde echoes a value of the wrong type or an unknown variant: a URL in it loses its
/// user information, however the password is spelt.
#[test]
fn a_url_echoed_by_any_config_error_loses_its_password() {
    let errors =
        refused_without_the_password(&format!("\"redis://:{PASSWORD}@cache.internal:6379/0\""));
    assert!(
        errors.contains("redis://***@cache.internal:6379/0"),
        "{errors}"
    );
    let errors = refused_without_the_password(&format!(
        "{{ store: \"redis://user:{PASSWORD}/with@slash@cache.internal:6379/0\" }}"
    ));
    assert!(
        errors.contains("redis://***@cache.internal:6379/0"),
        "{errors}"
    );
}

#[test]
fn the_file_shape_never_shows_the_redis_url_in_debug() {
    let shape: gateway::config::file::GatewayConfig = serde_yaml::from_str(&format!(
        "{REDIS_CONFIG}cache: {{ store: redis, redis_url: \"redis://:{PASSWORD}@cache.internal:6379/0\" }}\n"
    ))
    .unwrap();
    let debug = format!("{shape:?}");
    assert!(debug.contains("redis_url"), "{debug}");
    assert!(!debug.contains(PASSWORD), "{debug}");
}

#[test]
fn redis_url_and_redis_url_env_together_are_refused() {
    let errors = redis_config(
        "{ store: redis, redis_url: \"redis://127.0.0.1:6379/0\", redis_url_env: REDIS_URL }",
        Some("redis://127.0.0.1:6379/1"),
    )
    .unwrap_err();
    assert!(
        errors.contains("set either cache.redis_url or cache.redis_url_env, not both"),
        "{errors}"
    );
}
