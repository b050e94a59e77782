//! runc (opencontainers/runc): a plain OCI bundle, the same one crun takes
//! (tests/it runs the bundles with runc).

use super::Profile;

pub(super) const PROFILE: Profile = Profile {
    name: "runc",
    title: "runc",
    summary: "runc: plain OCI bundle, ociVersion 1.0.2",
    init: false,
    rdk_plugins: false,
    network_plugin: false,
    adds_id_maps: false,
};

