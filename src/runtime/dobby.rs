//! Dobby (rdkcentral): DobbyInit starts the app, `rdkPlugins` configure
//! networking, storage, logging, IPC and the rest; DobbyDaemon adds the
//! user-namespace maps it manages when the bundle has none.

use super::Profile;

pub(super) const PROFILE: Profile = Profile {
    name: "dobby",
    title: "Dobby",
    summary: "Dobby: DobbyInit, rdkPlugins, ociVersion 1.0.2-dobby (BundleGen's default)",
    init: true,
    rdk_plugins: true,
    network_plugin: true,
    adds_id_maps: true,
};

