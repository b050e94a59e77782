//! crun (containers/crun): a plain OCI bundle, BundleGen's `-u`/`--crun`.
//! crun reads `ociVersion` 1.0.2; nothing beyond the runtime specification
//! is assumed.

use super::Profile;

pub(super) const PROFILE: Profile = Profile {
    name: "crun",
    title: "crun",
    summary: "crun: plain OCI bundle, ociVersion 1.0.2 (BundleGen's -u)",
    init: false,
    rdk_plugins: false,
    network_plugin: false,
    adds_id_maps: false,
};

