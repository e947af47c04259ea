//! The preloaded application (`[app]`): the engine store opened for the
//! board's platform, `apps.json`, and the swap service a read-only root
//! needs.

use crate::request::BuildRequest;
use crate::Error;
use kiln_recipe::SwapActivation;
use kiln_tree::{Timestamp, TreePath};

/// The preloaded application: the engine store and its `apps.json`.
pub(crate) struct App {
    pub(crate) store: kiln_oci::Store,
    pub(crate) apps_json: Vec<u8>,
    pub(crate) store_path: TreePath,
    pub(crate) summary: kiln_oci::Summary,
}

/// Resolves the `[app]` inputs for the board's platform and builds
/// `apps.json` (reads only JSON and the compose file; layers stream later).
pub(crate) fn prepare_app(
    req: &BuildRequest<'_>,
    a: &kiln_recipe::AppSpec,
    time: Timestamp,
    label: &str,
) -> Result<App, Error> {
    a.compose.check_exists()?;
    for i in &a.images {
        i.input.check_exists()?;
    }
    let app_err = |source| Error::App {
        partition: label.to_string(),
        source: Box::new(source),
    };
    let platform = req
        .profile
        .arch
        .platforms()
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let platform = kiln_oci::Platform::parse(&platform).map_err(app_err)?;
    let inputs: Vec<kiln_oci::ImageInput> = a
        .images
        .iter()
        .map(|i| {
            let input = kiln_oci::ImageInput::new(&i.input.path);
            match &i.name {
                Some(n) => input.named(n.clone()),
                None => input,
            }
        })
        .collect();
    let store = kiln_oci::Store::open(&inputs, kiln_oci::StoreOptions { platform, time })
        .map_err(app_err)?;
    let compose = kiln_oci::Compose::read(&a.compose.path).map_err(app_err)?;
    let mut ids = kiln_oci::AppIds::derive(&req.seed.derive("app"), &a.name);
    if let Some(u) = &a.uuid {
        ids.app_uuid = u.clone();
    }
    if let Some(c) = &a.commit {
        ids.release_commit = c.clone();
    }
    ids.app_id = a.app_id;
    ids.release_id = a.release_id;
    let config: std::collections::BTreeMap<String, String> = a
        .config
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let apps = kiln_oci::AppsJson::build(
        &compose,
        &store,
        &ids,
        &config,
        a.pin_device.then_some(true),
    )
    .map_err(app_err)?;
    let mut apps = apps;
    let swap = &req.recipe.swap;
    if swap.size.bytes() > 0 && swap.activation == SwapActivation::AppService {
        let image = swap.service_image.as_deref().unwrap_or_default();
        let (composition, labels) = swap_service(&swap.path, label);
        apps.add_service(&store, &ids, SWAP_SERVICE, image, composition, labels)
            .map_err(app_err)?;
    }
    let store_path = TreePath::parse(a.store_path.as_bytes()).map_err(|e| Error::Layout {
        partition: label.to_string(),
        reason: format!("app.store-path: {e}"),
    })?;
    let summary = store.summary();
    Ok(App {
        store,
        apps_json: apps.to_bytes(),
        store_path,
        summary,
    })
}

/// The service `swap.activation = "app-service"` adds to the app.
pub const SWAP_SERVICE: &str = "kiln-swap";

/// The swap service for read-only roots (balenaOS): privileged, it mounts
/// the data partition by label inside its own mount namespace (the engine
/// offers no bind mount of the host's /mnt/data), runs `swapon` on the
/// swapfile (swap is kernel-wide: it stays on), then sleeps so the
/// supervisor sees it running; its healthcheck is the swapfile in
/// `/proc/swaps`. Only busybox applets are used (`findfs`, `mount`,
/// `swapon`, `grep`, `sleep`).
fn swap_service(
    swap_path: &str,
    data_label: &str,
) -> (
    serde_json::Value,
    std::collections::BTreeMap<String, String>,
) {
    let dir = "/run/kiln-swap";
    let file = format!("{dir}{swap_path}");
    let script = format!(
        "set -e; b=/bin/busybox; $b mkdir -p {dir}; \
         $b grep -q ' {dir} ' /proc/mounts || $b mount -t ext4 \"$($b findfs LABEL={data_label})\" {dir}; \
         $b grep -q '^{file} ' /proc/swaps || $b swapon {file}; \
         exec $b sleep 2147483647"
    );
    let composition = serde_json::json!({
        "command": ["/bin/busybox", "sh", "-c", script],
        "healthcheck": {"test": ["CMD", "/bin/busybox", "grep", "-q", format!("^{file} "), "/proc/swaps"]},
        "network_mode": "none",
        "privileged": true,
        "restart": "on-failure",
    });
    let labels = [(
        "io.kiln.swapfile".to_string(),
        format!("/mnt/data{swap_path}"),
    )]
    .into_iter()
    .collect();
    (composition, labels)
}
