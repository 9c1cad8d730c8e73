//! The rules that tie sections of the file together without one naming the other: no two
//! listeners may take the same port, and a route that requires authentication needs
//! an `auth` section. They read the file shape, so each holds whatever state the sections
//! themselves are in (a value a section already reported as invalid is skipped).

use std::net::SocketAddr;

use super::Problems;
use crate::config::{AuthMode, file::GatewayConfig};

pub(super) fn run(problems: &mut Problems<'_>, shape: &GatewayConfig) {
    listeners_apart(problems, shape);
    auth_section_for_required_routes(problems, shape);
}

/// No two listeners (`server.listen`, `server.tls.listen`, `admin.listen`) may take the
/// same port on the same (or any) address.
fn listeners_apart(problems: &mut Problems<'_>, shape: &GatewayConfig) {
    let parse = |text: &str| text.trim().parse::<SocketAddr>().ok();
    let mut listeners = vec![
        ("server.listen", parse(&shape.server.listen)),
        (
            "server.tls.listen",
            shape.server.tls.as_ref().and_then(|tls| parse(&tls.listen)),
        ),
        ("admin.listen", parse(&shape.admin.listen)),
    ];
    if shape.server.tls.is_none() {
        listeners.remove(1);
    }
    for (later, (key, addr)) in listeners.iter().enumerate() {
        let Some(addr) = addr else { continue };
        let earlier = listeners[..later]
            .iter()
            .filter_map(|(k, a)| Some((k, (*a)?)))
            .find(|(_, other)| collide(*addr, *other));
        if let Some((other_key, other)) = earlier {
            problems.add(*key, format!("{addr} collides with {other_key} {other}"));
        }
    }
}

fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `auth: required` (the default) is only possible with an `auth` section to say how.
fn auth_section_for_required_routes(problems: &mut Problems<'_>, shape: &GatewayConfig) {
    if shape.auth.is_some() {
        return;
    }
    for (index, route) in shape.routes.iter().enumerate() {
        if route.auth == AuthMode::Required {
            problems.add(
                format!("routes[{index}].auth"),
                "this route requires authentication but there is no `auth` section; add one or set `auth: none`",
            );
        }
    }
}
