//! The app's `network` object, which is also the data of Dobby's
//! `networking` plugin (`defs-plugins.json` `Networking`).
//!
//! BundleGen copies the object into `config.json` unchecked, so the sample
//! `"dnsmasq": "true"` (a string) reaches Dobby, whose parser wants a JSON
//! boolean. We accept `"true"`/`"false"` strings for the boolean keys, warn,
//! and write real booleans.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diag::{Diagnostics, Warning};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// `nat`, `open`, `private` (or another mode the platform lists).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub dnsmasq: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_forwarding: Option<PortForwarding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicast_forwarding: Option<Vec<MulticastForwarding>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inter_container: Option<Vec<InterContainer>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortForwarding {
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub localhost_masquerade: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_to_container: Option<Vec<PortRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_to_host: Option<Vec<PortRule>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PortRule {
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MulticastForwarding {
    pub ip: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterContainer {
    pub direction: Direction,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub localhost_masquerade: Option<bool>,
}

/// A JSON boolean, or the strings `"true"`/`"false"` (as BundleGen's
/// samples write them).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Option<bool>, E> {
            Ok(Some(v))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<bool>, E> {
            match v {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
            }
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Warns about booleans written as strings in `network` (they are accepted).
pub(super) fn warn_string_booleans(path: &Path, app: &Value, diag: &dyn Diagnostics) {
    let Some(net) = app.get("network") else {
        return;
    };
    let mut found = Vec::new();
    for key in ["ipv4", "ipv6", "dnsmasq"] {
        if let Some(Value::String(s)) = net.get(key) {
            found.push((format!("network.{key}"), s.clone()));
        }
    }
    if let Some(Value::String(s)) = net.pointer("/portForwarding/localhostMasquerade") {
        found.push((
            "network.portForwarding.localhostMasquerade".into(),
            s.clone(),
        ));
    }
    if let Some(Value::Array(rules)) = net.get("interContainer") {
        for (i, r) in rules.iter().enumerate() {
            if let Some(Value::String(s)) = r.get("localhostMasquerade") {
                found.push((
                    format!("network.interContainer[{i}].localhostMasquerade"),
                    s.clone(),
                ));
            }
        }
    }
    for (key, s) in found {
        diag.warning(Warning::new(
            path.display().to_string(),
            format!(
                "{key}: {s:?} is a string; Dobby expects a JSON boolean, written as {s} \
                 (write {s} without quotes)"
            ),
        ));
    }
}
