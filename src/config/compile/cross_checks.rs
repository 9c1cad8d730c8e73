//! The rules that tie sections of the file together without one naming the other: the two
//! listeners must not take the same port, and a route that requires authentication needs
//! an `auth` section. They read the file shape, so each holds whatever state the sections
//! themselves are in (a value a section already reported as invalid is skipped).

use std::net::SocketAddr;

use super::Problems;
use crate::config::{AuthMode, file::GatewayConfig};

pub(super) fn run(problems: &mut Problems<'_>, shape: &GatewayConfig) {
    listeners_apart(problems, shape);
    auth_section_for_required_routes(problems, shape);
}

/// `admin.listen` must not be `server.listen`'s port on the same (or any) address.
fn listeners_apart(problems: &mut Problems<'_>, shape: &GatewayConfig) {
    let parse = |text: &str| text.trim().parse::<SocketAddr>().ok();
    let (Some(proxy), Some(admin)) = (parse(&shape.server.listen), parse(&shape.admin.listen))
    else {
        return;
    };
    if proxy.port() == admin.port()
        && (proxy.ip() == admin.ip() || proxy.ip().is_unspecified() || admin.ip().is_unspecified())
    {
        problems.add(
            "admin.listen",
            format!("{admin} collides with server.listen {proxy}"),
        );
    }
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
