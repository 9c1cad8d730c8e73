//! The `gateway` binary as a process: `check`, start-up errors, SIGTERM draining, SIGHUP.

use std::{
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::support::{Mode, TestUpstream, client, eventually, free_port, free_ports};

fn gateway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn run(args: &[&str]) -> Output {
    gateway()
        .args(args)
        .env("JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .output()
        .unwrap()
}

/// Waits for a child to exit, failing the test after `deadline`.
fn wait_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("process did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn check_accepts_the_shipped_config() {
    let out = run(&["check", "--config", "gateway.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_explain_piped_into_a_reader_that_stops_early_ends_quietly() {
    // `gateway check --explain | head -4`: the reader's end is closed before the report is
    // written, so every write meets a closed pipe.
    let mut child = gateway()
        .args(["check", "--explain", "--config", "gateway.yaml"])
        .env("JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_without_the_jwt_secret_checks_the_structure_and_says_it_is_needed_at_start() {
    let out = gateway()
        .args(["check", "--explain", "--config", "gateway.yaml"])
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("gateway.yaml: ok"), "{stdout}");
    assert!(stdout.contains("breaker default"), "{stdout}");
    assert!(
        stdout.contains("JWT_SECRET is not set here")
            && stdout.contains("`gateway` will need it at start"),
        "{stdout}"
    );
    // Structure is still checked without the secret.
    let out = gateway()
        .args([
            "check",
            "--config",
            "tests/fixtures/invalid/bad-routes.yaml",
        ])
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_refuses_a_jwt_secret_that_is_set_but_too_short() {
    let out = gateway()
        .args(["check", "--config", "gateway.yaml"])
        .env("JWT_SECRET", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth.jwt.secret_env: the secret in JWT_SECRET is shorter than 32 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("short\""), "{stderr}");
}

#[test]
fn check_lists_every_problem_and_fails() {
    let out = run(&[
        "check",
        "--config",
        "tests/fixtures/invalid/bad-routes.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("4 problems"), "{stderr}");
    assert!(stderr.contains("bad-routes.yaml:9: routes[1]"), "{stderr}");
    let out = run(&["check", "--config", "does-not-exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

fn write_config(dir: &Path, listen: u16, admin: u16, backend: &str) -> String {
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "server: {{ listen: 127.0.0.1:{listen}, threads: 1, grace_period: 3s }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nupstreams:\n  slow: {{ backends: [\"{backend}\"] }}\nroutes:\n  - {{ path: /svc, upstream: slow, auth: none }}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn a_port_in_use_is_a_clear_start_up_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempdir();
    let config = write_config(&dir, port, free_port(), "127.0.0.1:1");
    let mut child = gateway()
        .args(["--config", &config])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(!status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("server.listen 127.0.0.1:{port} is already in use")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let origin = TestUpstream::start(Mode::Delay(Duration::from_millis(700))).await;
    let dir = tempdir();
    let [port, admin] = free_ports();
    let config = write_config(&dir, port, admin, &origin.addr.to_string());
    let mut child = gateway()
        .args(["--config", &config])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(10), || async move {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;

    let in_flight = tokio::spawn(async move {
        reqwest::get(format!("http://127.0.0.1:{port}/svc"))
            .await
            .map(|r| r.status().as_u16())
    });
    eventually(Duration::from_secs(30), || async { origin.hits() == 1 }).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the in-flight request completes"
    );
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_healthz_answers_draining_until_exit_while_requests_finish() {
    // Delays long enough to observe each phase on a busy machine: the in-flight request
    // outlives the shutdown delay and ends inside the grace period.
    let slow = TestUpstream::start(Mode::Delay(Duration::from_secs(4))).await;
    let fast = TestUpstream::start(Mode::Echo).await;
    let dir = tempdir();
    let [port, admin] = free_ports();
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "server: {{ listen: 127.0.0.1:{port}, threads: 1, shutdown_delay: 3s, grace_period: 3s }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nupstreams:\n  slow: {{ backends: [\"{}\"], read_timeout: 10s }}\n  fast: {{ backends: [\"{}\"] }}\nroutes:\n  - {{ path: /slow, upstream: slow, auth: none }}\n  - {{ path: /fast, upstream: fast, auth: none }}\n",
            slow.addr, fast.addr
        ),
    )
    .unwrap();
    let mut child = gateway()
        .args(["--config", &path.display().to_string()])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let healthz = move || async move {
        let response = client()
            .get(format!("http://127.0.0.1:{admin}/healthz"))
            .send()
            .await
            .ok()?;
        Some((response.status().as_u16(), response.text().await.ok()?))
    };
    eventually(Duration::from_secs(10), || async {
        healthz().await.is_some_and(|(status, _)| status == 200)
    })
    .await;

    let in_flight = tokio::spawn(async move {
        client()
            .get(format!("http://127.0.0.1:{port}/slow"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    eventually(Duration::from_secs(30), || async { slow.hits() == 1 }).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // Draining: not ready, yet still serving new connections, each told to close.
    eventually(Duration::from_secs(30), || async {
        healthz().await == Some((503, r#"{"status":"draining"}"#.to_owned()))
    })
    .await;
    let response = client()
        .get(format!("http://127.0.0.1:{port}/fast"))
        .send()
        .await
        .expect("a new connection during shutdown_delay is served");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["connection"], "close");

    // After the delay the proxy listener closes; the admin listener still answers
    // "draining" while the in-flight request finishes.
    eventually(Duration::from_secs(10), || async {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await;
    assert_eq!(healthz().await.map(|(status, _)| status), Some(503));
    assert!(
        !in_flight.is_finished(),
        "the slow request ended too early to prove anything"
    );
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);

    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", admin)).is_err(),
        "admin listener left behind"
    );
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gateway-cli-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn check_explains_each_breaker() {
    let out = run(&["check", "--explain", "--config", "gateway.yaml"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("breaker default (each backend of parties, paths, trips, users):"),
        "{stdout}"
    );
    assert!(
        stdout.contains("opens after 5 failures in a row"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stays open 10s at first, doubling after each failed probe up to 5m"),
        "{stdout}"
    );
    assert!(
        stdout.contains("upstream users:\n  - checks GET /healthz on each backend every 5s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the token exchange takes at most 71 calls at once"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rate limit token_requests (on /auth):"),
        "{stdout}"
    );
    assert!(
        stdout.contains("at most 4 in progress per client address"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_config() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let dir = tempdir();
    let [port, admin] = free_ports();
    let path = dir.join("gateway.yaml");
    let base = format!(
        "server: {{ listen: 127.0.0.1:{port}, threads: 1, grace_period: 0s, watch_interval: 0s }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nupstreams:\n  o: {{ backends: [\"{}\"] }}\nroutes:\n  - {{ path: /svc, upstream: o, auth: none }}\n",
        origin.addr
    );
    std::fs::write(&path, &base).unwrap();
    let mut child = gateway()
        .args(["--config", &path.display().to_string()])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let status_of = |path: &'static str| async move {
        reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .map_or(0, |r| r.status().as_u16())
    };
    eventually(Duration::from_secs(10), || async {
        status_of("/svc").await == 200
    })
    .await;

    // Watching is off (watch_interval: 0s): the edit waits for SIGHUP.
    let edited = format!("{base}  - {{ path: /added, upstream: o, auth: none }}\n");
    std::fs::write(&path, &edited).unwrap();
    assert_eq!(status_of("/added").await, 404);
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually(Duration::from_secs(10), || async {
        status_of("/added").await == 200
    })
    .await;
    let status: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{admin}/admin/config"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["last_reload"]["trigger"], "sighup");
    assert_eq!(
        status["hash"],
        crate::support::gateway::sha256(edited.as_bytes()).as_str()
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_work_stealing_every_connection_is_served_and_the_switch_needs_a_restart() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let dir = tempdir();
    let [port, admin] = free_ports();
    let path = dir.join("gateway.yaml");
    let config = |work_stealing: bool| {
        format!(
            "server: {{ listen: 127.0.0.1:{port}, threads: 2, work_stealing: {work_stealing}, grace_period: 0s, watch_interval: 0s }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nupstreams:\n  o: {{ backends: [\"{}\"] }}\nroutes:\n  - {{ path: /svc, upstream: o, auth: none }}\n",
            origin.addr
        )
    };
    std::fs::write(&path, config(false)).unwrap();
    let mut child = gateway()
        .args(["--config", &path.display().to_string()])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/svc/echo");
    eventually(Duration::from_secs(10), || async {
        reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
    })
    .await;

    // Each runtime keeps the connections it accepted: many connections at once, each with
    // several requests, all answered.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut statuses = Vec::new();
                for _ in 0..8 {
                    statuses.push(
                        client
                            .get(&url)
                            .send()
                            .await
                            .map_or(0, |r| r.status().as_u16()),
                    );
                }
                statuses
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), vec![200; 8]);
    }

    std::fs::write(&path, config(true)).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let status_url = format!("http://127.0.0.1:{admin}/admin/config");
    eventually(Duration::from_secs(10), || async {
        let status: serde_json::Value = match reqwest::get(&status_url).await {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => return false,
        };
        status["last_reload"]["errors"]
            .to_string()
            .contains("server.work_stealing: changing the worker runtimes needs a restart")
    })
    .await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn check_warns_about_an_open_admin_listener_beyond_loopback_and_refuses_an_unguarded_one() {
    let dir = tempdir();
    let path = dir.join("gateway.yaml");
    let body = "upstreams:\n  u: { backends: [\"127.0.0.1:1\"] }\nroutes:\n  - { path: /u, upstream: u, auth: none }\n";
    std::fs::write(
        &path,
        format!("admin: {{ listen: \"0.0.0.0:9091\", open: true }}\n{body}"),
    )
    .unwrap();
    let open = run(&["check", "--config", path.to_str().unwrap()]);
    assert!(open.status.success());
    let stderr = String::from_utf8_lossy(&open.stderr);
    assert!(
        stderr.contains("warning: admin.listen 0.0.0.0:9091"),
        "{stderr}"
    );

    std::fs::write(
        &path,
        format!("admin: {{ listen: \"0.0.0.0:9091\" }}\n{body}"),
    )
    .unwrap();
    let unguarded = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(unguarded.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unguarded.stderr);
    assert!(stderr.contains(":1: admin.listen"), "{stderr}");

    std::fs::write(
        &path,
        format!("admin: {{ listen: \"0.0.0.0:9091\", token_env: GW_ADMIN }}\n{body}"),
    )
    .unwrap();
    let guarded = gateway()
        .args(["check", "--config", path.to_str().unwrap()])
        .env("GW_ADMIN", "a-long-enough-admin-token")
        .output()
        .unwrap();
    assert!(guarded.status.success());
    assert!(!String::from_utf8_lossy(&guarded.stderr).contains("warning"));
    std::fs::remove_dir_all(dir).unwrap();
}
