//! What the data partition of an image holds: the preloaded engine store
//! (images and their layers, from `repositories.json` and the image
//! configs), `apps.json` (apps, releases, services and the image each
//! runs) and the swapfile (size, header label and UUID). Read with the
//! pure-Rust `ext4-view` reader, bounded: only small JSON files and the
//! swap header page are read.

use kiln_units::ReadAt;
use serde::Serialize;
use serde_json::Value;
use std::rc::Rc;

/// Largest JSON file read from the data partition (bytes).
const MAX_JSON_BYTES: u64 = 16 << 20;

/// One image in the engine store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredImage {
    /// `sha256:<config digest>`.
    pub id: String,
    /// References (`name:tag`, `name@sha256:...`) pointing at it.
    pub references: Vec<String>,
    /// Number of layers (from the image config's `rootfs.diff_ids`).
    pub layers: usize,
}

/// One service of `apps.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppService {
    /// App name.
    pub app: String,
    /// Release commit.
    pub release: String,
    /// Service name.
    pub service: String,
    /// The image reference it runs.
    pub image: String,
    /// Whether the engine store holds that reference.
    pub preloaded: bool,
}

/// The swapfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwapInfo {
    /// Path on the data partition.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Header label.
    pub label: String,
    /// Header UUID.
    pub uuid: String,
}

/// The data partition's application content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DataInfo {
    /// Images in the engine store (`docker/`).
    pub images: Vec<StoredImage>,
    /// Services of `apps.json`.
    pub services: Vec<AppService>,
    /// The swapfile, if `/swapfile` exists with a swap header.
    pub swap: Option<SwapInfo>,
}

struct Region<R> {
    disk: Rc<R>,
    start: u64,
}

impl<R: ReadAt> ext4_view::Ext4Read for Region<R> {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let at = self
            .start
            .checked_add(start_byte)
            .ok_or("offset overflow")?;
        self.disk
            .read_exact_at(dst, at)
            .map_err(|e| Box::new(e) as _)
    }
}

fn read_json(fs: &ext4_view::Ext4, path: &str) -> Option<Value> {
    let md = fs.metadata(path).ok()?;
    if md.len() > MAX_JSON_BYTES {
        return None;
    }
    serde_json::from_slice(&fs.read(path).ok()?).ok()
}

/// Reads the data partition at `[start, ..)` of `disk`; `None` when it is
/// not an ext4 filesystem `ext4-view` can read.
pub fn inspect_data<R: ReadAt + 'static>(
    disk: Rc<R>,
    start: u64,
    store_dir: &str,
) -> Option<DataInfo> {
    let fs = ext4_view::Ext4::load(Box::new(Region { disk, start })).ok()?;
    let mut info = DataInfo::default();
    let base = format!("/{store_dir}/image/overlay2");
    let mut refs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    if let Some(repos) = read_json(&fs, &format!("{base}/repositories.json")) {
        for repo in repos["Repositories"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.values())
        {
            for (r, id) in repo.as_object().into_iter().flatten() {
                refs.entry(id.as_str().unwrap_or_default().to_string())
                    .or_default()
                    .push(r.clone());
            }
        }
    }
    for (id, references) in refs {
        let hex = id.strip_prefix("sha256:").unwrap_or(&id);
        let layers = read_json(&fs, &format!("{base}/imagedb/content/sha256/{hex}"))
            .and_then(|c| c["rootfs"]["diff_ids"].as_array().map(Vec::len))
            .unwrap_or(0);
        info.images.push(StoredImage {
            id,
            references,
            layers,
        });
    }
    if let Some(apps) = read_json(&fs, "/apps.json") {
        for app in apps["apps"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.values())
        {
            let name = app["name"].as_str().unwrap_or_default();
            for (commit, rel) in app["releases"].as_object().into_iter().flatten() {
                for (svc, s) in rel["services"].as_object().into_iter().flatten() {
                    let image = s["image"].as_str().unwrap_or_default().to_string();
                    let preloaded = info.images.iter().any(|i| i.references.contains(&image));
                    info.services.push(AppService {
                        app: name.to_string(),
                        release: commit.clone(),
                        service: svc.clone(),
                        image,
                        preloaded,
                    });
                }
            }
        }
    }
    if let Ok(mut f) = fs.open("/swapfile") {
        let size = f.metadata().len();
        let mut page = [0u8; 4096];
        let mut got = 0;
        while got < page.len() {
            match f.read_bytes(&mut page[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        if got == page.len() && &page[4086..] == b"SWAPSPACE2" {
            let label_end = page[1052..1068].iter().position(|&b| b == 0).unwrap_or(16);
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(&page[1036..1052]);
            info.swap = Some(SwapInfo {
                path: "/swapfile".into(),
                size,
                label: String::from_utf8_lossy(&page[1052..1052 + label_end]).into_owned(),
                uuid: kiln_units::Guid::from_rfc_bytes(uuid).to_string(),
            });
        }
    }
    Some(info)
}

/// One partition's role in a balenaOS layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolePartition {
    /// `Boot`, `RootA`, `RootB`, `State` or `Data`.
    pub role: kiln_base::Role,
    /// Partition number.
    pub number: u32,
    /// Its label.
    pub label: String,
}

/// Size and free space of the data partition's ext4 (from its superblock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataSpace {
    /// Filesystem size in bytes.
    pub size_bytes: u64,
    /// Free bytes: free blocks × block size.
    pub free_bytes: u64,
    /// Block size in bytes.
    pub block_size: u64,
    /// Free blocks.
    pub free_blocks: u64,
}

/// The balenaOS view of an image (vendor base image or kiln output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseInfo {
    /// An installer (flasher) image: `flash-*` labels.
    pub flasher: bool,
    /// Partitions with a role, in partition order.
    pub roles: Vec<RolePartition>,
    /// Device type from the boot partition.
    pub device: Option<kiln_base::DeviceInfo>,
    /// OS release from rootA.
    pub os: Option<kiln_base::OsInfo>,
    /// The data partition's size and free space.
    pub data_space: Option<DataSpace>,
    /// A flasher's inner OS image.
    pub inner_image: Option<kiln_base::InnerImage>,
    /// What could not be read (one line each).
    pub problems: Vec<String>,
}

impl BaseInfo {
    /// Text lines for `kiln inspect`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let kind = if self.flasher {
            "balenaOS flasher (installer) image"
        } else {
            "balenaOS layout"
        };
        out.push(format!(
            "base      {kind}: {}",
            self.roles
                .iter()
                .map(|r| format!("{}=p{} {}", role_name(r.role), r.number, r.label))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if let Some(os) = &self.os {
            out.push(format!(
                "os        {} (version {})",
                os.pretty_name.as_deref().unwrap_or("-"),
                os.version.as_deref().unwrap_or("-")
            ));
            if let Some(ivi) = &os.image_version_info {
                for l in ivi.lines() {
                    out.push(format!("  image-version-info  {l}"));
                }
            }
        }
        if let Some(d) = &self.device {
            out.push(format!(
                "device    {} arch {} (from {})",
                d.slug.as_deref().unwrap_or("-"),
                d.arch.as_deref().unwrap_or("-"),
                d.source
            ));
        }
        if let Some(s) = &self.data_space {
            out.push(format!(
                "data free {} bytes of {} ({} free blocks of {} bytes)",
                s.free_bytes, s.size_bytes, s.free_blocks, s.block_size
            ));
        }
        if let Some(i) = &self.inner_image {
            out.push(format!("inner     {} ({} bytes)", i.path, i.size));
        }
        for p in &self.problems {
            out.push(format!("warning   {p}"));
        }
        out
    }
}

fn role_name(r: kiln_base::Role) -> String {
    r.to_string()
}

/// The balenaOS view of `disk`; `None` unless kiln-base recognises the
/// layout (boot and data partitions, or a flasher's boot and rootA,
/// found by label).
pub fn inspect_base<R: ReadAt + 'static>(disk: &Rc<R>) -> Option<BaseInfo> {
    use kiln_base::Role;
    let layout = kiln_base::detect(&**disk).ok()?;
    let mut problems = Vec::new();
    let mut note = |e: kiln_base::Error| problems.push(crate::error::chain(&e));
    let device = kiln_base::device_info(&**disk, &layout)
        .map_err(&mut note)
        .ok();
    let os = if layout.role(Role::RootA).is_some() {
        kiln_base::os_info(disk, &layout).map_err(&mut note).ok()
    } else {
        None
    };
    let data_space = layout.role(Role::Data).and_then(|p| {
        let region = kiln_units::SubRegion::new(&**disk, p.start_bytes, p.size_bytes);
        match kiln_base::Ext4Super::read(&region) {
            Ok(Some(sb)) => Some(DataSpace {
                size_bytes: sb.size_bytes(),
                free_bytes: sb.free_bytes(),
                block_size: sb.block_size,
                free_blocks: sb.free_blocks,
            }),
            _ => None,
        }
    });
    let inner_image = if layout.flasher {
        kiln_base::flasher_inner(disk, &layout)
            .map_err(&mut note)
            .ok()
            .flatten()
    } else {
        None
    };
    let roles = layout
        .partitions
        .iter()
        .filter_map(|p| {
            Some(RolePartition {
                role: p.role?,
                number: p.number,
                label: p.display_label(),
            })
        })
        .collect();
    Some(BaseInfo {
        flasher: layout.flasher,
        roles,
        device,
        os,
        data_space,
        inner_image,
        problems,
    })
}
