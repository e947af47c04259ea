//! The crate's one error type.

use std::path::PathBuf;

/// Why images could not be read, resolved or turned into an engine store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading an input failed.
    #[error("{path}: {op}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A blob's bytes do not hash to the digest that names it.
    #[error("{input}: blob {digest} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        /// The image input.
        input: PathBuf,
        /// The expected digest (`sha256:<hex>`).
        digest: String,
        /// The digest of the bytes actually read.
        actual: String,
    },
    /// A blob's length differs from its descriptor.
    #[error("{input}: blob {digest} has {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        /// The image input.
        input: PathBuf,
        /// The blob digest.
        digest: String,
        /// Size from the descriptor, bytes.
        expected: u64,
        /// Size read, bytes.
        actual: u64,
    },
    /// A layer's uncompressed tar does not hash to the diff ID the image
    /// config lists for it.
    #[error(
        "{input}: layer {blob} uncompresses to diff ID {actual}, the image config says {expected}"
    )]
    DiffIdMismatch {
        /// The image input.
        input: PathBuf,
        /// The layer blob (digest or archive member).
        blob: String,
        /// Diff ID from the config.
        expected: String,
        /// Diff ID computed.
        actual: String,
    },
    /// A blob the image needs is not in the input.
    #[error("{input}: blob {digest} is missing")]
    MissingBlob {
        /// The image input.
        input: PathBuf,
        /// The missing digest or member name.
        digest: String,
    },
    /// A descriptor's media type kiln does not handle.
    #[error("{input}: blob {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The image input.
        input: PathBuf,
        /// The blob.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// JSON metadata (index, manifest, config, manifest.json) is malformed.
    #[error("{input}: {what} is malformed")]
    BadJson {
        /// The image input.
        input: PathBuf,
        /// Which document.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The input is structurally invalid (not a layout, wrong counts...).
    #[error("{input}: {reason}")]
    InvalidInput {
        /// The image input.
        input: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The requested platform is not in a multi-platform image.
    #[error("{input}: image {image} has no {wanted} variant (present: {present})")]
    PlatformNotFound {
        /// The image input.
        input: PathBuf,
        /// The image name or digest.
        image: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms present, comma separated.
        present: String,
    },
    /// A layer tar holds something that cannot go into the store.
    #[error("{input}: layer {blob}: {reason}")]
    BadLayer {
        /// The image input.
        input: PathBuf,
        /// The layer blob.
        blob: String,
        /// What is wrong.
        reason: String,
    },
    /// A layer could not be decompressed or is not a well-formed tar.
    #[error("{input}: layer {blob} is malformed")]
    LayerIo {
        /// The image input.
        input: PathBuf,
        /// The layer blob.
        blob: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A layer member was refused by the tree model (hostile path,
    /// unsupported type, malformed tar).
    #[error("{input}: layer {blob}")]
    Layer {
        /// The image input.
        input: PathBuf,
        /// The layer blob.
        blob: String,
        /// The cause.
        #[source]
        source: kiln_tree::Error,
    },
    /// An image reference that cannot be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// Why.
        reason: &'static str,
    },
    /// The compose file is malformed.
    #[error("{path}: compose file is malformed")]
    Compose {
        /// The compose file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The compose file is well-formed but unusable.
    #[error("{path}: service {service:?}: {reason}")]
    ComposeService {
        /// The compose file.
        path: PathBuf,
        /// The service.
        service: String,
        /// What is wrong.
        reason: String,
    },
    /// A compose service names an image none of the inputs provides.
    #[error("{path}: service {service:?} uses image {image:?}, which no input provides (inputs provide: {available})")]
    ImageNotProvided {
        /// The compose file.
        path: PathBuf,
        /// The service.
        service: String,
        /// The image reference.
        image: String,
        /// References available, comma separated.
        available: String,
    },
    /// Two inputs give the same reference to different images.
    #[error("reference {reference} names two different images ({first} and {second})")]
    ConflictingReference {
        /// The reference.
        reference: String,
        /// First image ID.
        first: String,
        /// Second image ID.
        second: String,
    },
    /// The existing engine store to merge with is inconsistent.
    #[error("existing engine store: {path}: {reason}")]
    ExistingStore {
        /// The path in the old store (relative to its data root).
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Reading the existing engine store failed.
    #[error("existing engine store: cannot read {path}")]
    StoreView {
        /// The path in the old store (relative to its data root).
        path: String,
        /// The view's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The parameters passed in are inconsistent.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
}

impl Error {
    pub(crate) fn invalid(input: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            input: input.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// A failure while feeding a sink: either the inputs or the sink failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError<E> {
    /// The inputs could not be read or are invalid.
    #[error(transparent)]
    Input(#[from] Error),
    /// The sink refused an entry.
    #[error("the sink refused an entry")]
    Sink(#[source] E),
}
