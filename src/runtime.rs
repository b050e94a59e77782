//! The runtimes a bundle is made for, and everything that differs between
//! them. A runtime is a [`Profile`]: a name and the features the bundle may
//! rely on. The bundle stage asks the profile (never the runtime's name)
//! whether to start the app under DobbyInit, write `rdkPlugins`, leave the
//! network or the user-namespace maps to the runtime, or honour optional
//! mounts; so adding a runtime is one module here (its profile and tests)
//! plus its line in [`ALL`].
//!
//! BundleGen knows two modes: Dobby (the default) and `-u`/`--crun`, a
//! plain OCI bundle. `--runtime` names the runtime; `-u` is `--runtime crun`.

mod crun;
mod dobby;
mod runc;

/// What a runtime provides beyond the OCI runtime specification, as far as
/// the bundle depends on it.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    /// The name `--runtime` takes and the report shows.
    pub name: &'static str,
    /// The name as messages spell it (`Dobby`).
    pub title: &'static str,
    /// One line for `--help` and the docs.
    pub summary: &'static str,
    /// The app is started by DobbyInit (the first argument, bind-mounted
    /// from the device).
    pub init: bool,
    /// Dobby's extensions: `rdkPlugins` with `ociVersion` `1.0.2-dobby` (or
    /// the DobbyPluginLauncher hooks of a compliant config), the plugin
    /// directory mount, `X-dobby.optional` mounts and persistent storage
    /// handed to the storage plugin. Without them an optional mount is an
    /// ordinary one and persistent storage a tmpfs, with a warning.
    pub rdk_plugins: bool,
    /// The runtime sets up the container's network (Dobby's networking
    /// plugin). Without it the bundle gets its own network namespace unless
    /// the app asks for the host's (`network.type` `open`).
    pub network_plugin: bool,
    /// The runtime adds uid/gid maps when it starts the container, so a
    /// platform with user namespaces but no maps still gets one. Without
    /// it such a bundle is built without a user namespace.
    pub adds_id_maps: bool,
}

/// A runtime: one of the profiles of [`ALL`].
pub type Runtime = &'static Profile;

/// Dobby, BundleGen's default.
pub const DOBBY: Runtime = &dobby::PROFILE;
/// crun: BundleGen's `-u`/`--crun`.
pub const CRUN: Runtime = &crun::PROFILE;
/// runc.
pub const RUNC: Runtime = &runc::PROFILE;

/// Every runtime, the default first.
pub const ALL: &[Runtime] = &[DOBBY, CRUN, RUNC];

/// The runtime called `name`.
pub fn by_name(name: &str) -> Option<Runtime> {
    ALL.iter().copied().find(|p| p.name == name)
}

/// The names `--runtime` takes, in [`ALL`]'s order.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for p in ALL {
            assert_eq!(by_name(p.name), Some(*p));
            assert_eq!(ALL.iter().filter(|q| q.name == p.name).count(), 1, "{}", p.name);
            assert!(!p.summary.is_empty());
        }
        assert_eq!(by_name("youki"), None);
        assert_eq!(ALL[0], DOBBY, "Dobby is BundleGen's default");
    }
}
