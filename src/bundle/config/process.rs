//! `process`: environment, rlimits and capabilities.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{ConfigError, ConfigInputs, DEFAULT_CAPS};
use crate::diag::{Diagnostics, Warning};
use crate::operator::is_cap_name;
use crate::platform::model::ResourceLimit;

/// `PATH` when the image sets none (umoci's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Image env, platform `envvar`, GPU env (graphics apps), operator env:
/// a later value replaces an earlier one of the same name, which keeps its
/// place.
pub(super) fn environment(inp: &ConfigInputs<'_>, graphics: bool, image: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut set = |e: &str| {
        let name = e.split_once('=').map_or(e, |(n, _)| n);
        match out
            .iter_mut()
            .find(|o| o.split_once('=').map_or(o.as_str(), |(n, _)| n) == name)
        {
            Some(slot) => *slot = e.to_owned(),
            None => out.push(e.to_owned()),
        }
    };
    image.iter().for_each(|e| set(e));
    if !image.iter().any(|e| e.starts_with("PATH=")) {
        set(DEFAULT_PATH);
    }
    let spec = &inp.platform.spec;
    spec.envvar.iter().flatten().for_each(|e| set(e));
    if graphics {
        let gpu = spec.gpu.as_ref();
        gpu.and_then(|g| g.envvar.as_ref())
            .into_iter()
            .flatten()
            .for_each(|e| set(e));
        let display = gpu
            .and_then(|g| g.wayland_display.as_deref())
            .unwrap_or("westeros");
        set(&format!("WAYLAND_DISPLAY={display}"));
    }
    if let Some(op) = inp.operator {
        op.env.iter().for_each(|e| set(e));
    }
    out
}

/// umoci's `RLIMIT_NOFILE` 1024, then the platform's and the operator's
/// limits (checked when each was loaded), a later one replacing the same
/// type.
pub(super) fn rlimits(inp: &ConfigInputs<'_>) -> Value {
    let mut out: Vec<ResourceLimit> = vec![ResourceLimit {
        kind: "RLIMIT_NOFILE".into(),
        hard: 1024,
        soft: 1024,
    }];
    let platform = inp.platform.spec.resource_limits.iter().flatten();
    let operator = inp.operator.into_iter().flat_map(|op| op.rlimits.iter());
    for r in platform.chain(operator) {
        match out.iter_mut().find(|o| o.kind == r.kind) {
            Some(slot) => *slot = r.clone(),
            None => out.push(r.clone()),
        }
    }
    json!(out)
}

/// The platform's list (or BundleGen's default set), plus the app's `add`,
/// minus the app's `drop`, the platform's `dropCapabilities` and the
/// operator's `dropCapabilities`; sorted.
pub(super) fn capabilities(
    inp: &ConfigInputs<'_>,
    diag: &dyn Diagnostics,
) -> Result<Vec<String>, ConfigError> {
    let spec = &inp.platform.spec;
    let mut caps: BTreeSet<String> = match &spec.capabilities {
        Some(list) => list.iter().cloned().collect(),
        None => DEFAULT_CAPS.iter().map(|c| (*c).to_owned()).collect(),
    };
    let app_caps = inp.app.capabilities.clone().unwrap_or_default();
    for c in &app_caps.add {
        if !is_cap_name(c) {
            return Err(ConfigError::Invalid {
                subject: format!("{}: capabilities.add", inp.app.source.display()),
                message: format!("{c:?} is not a capability name like \"CAP_NET_RAW\""),
            });
        }
        caps.insert(c.clone());
    }
    let drops = app_caps
        .drop
        .iter()
        .chain(spec.drop_capabilities.iter().flatten())
        .chain(
            inp.operator
                .into_iter()
                .flat_map(|o| o.drop_capabilities.iter()),
        );
    for c in drops {
        caps.remove(c);
    }
    if let Some(bad) = caps.iter().find(|c| !is_cap_name(c)) {
        diag.warning(Warning::new(
            inp.platform.name.clone(),
            format!("capabilities: {bad:?} is not a capability name; the runtime will refuse it"),
        ));
    }
    Ok(caps.into_iter().collect())
}
