//! `admin:`: the admin listener (metrics, health, breaker state).

use super::Problems;
use crate::config::{AdminSettings, file::AdminConfig};

pub(super) fn compile(problems: &mut Problems<'_>, config: &AdminConfig) -> Option<AdminSettings> {
    let mut part = problems.part("admin");
    let listen = part.listen_addr("listen", &config.listen)?;
    part.passed()?;
    Some(AdminSettings { listen })
}
