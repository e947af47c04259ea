//! Errors of a build, each tagged with the stage and partition.

use std::path::PathBuf;

/// Why a build or an inspection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The profile or recipe (or a file it names) is invalid.
    #[error(transparent)]
    Recipe(#[from] kiln_recipe::Error),
    /// A tree source (rootfs, boot files) could not be read. The input is
    /// not repeated when the cause names it already.
    #[error(
        "partition {partition}{}",
        if source.file() == Some(std::path::Path::new(input.as_str())) {
            String::new()
        } else {
            format!(": {input}")
        }
    )]
    Source {
        /// Partition label.
        partition: String,
        /// The input path.
        input: String,
        /// The cause.
        #[source]
        source: kiln_tree::Error,
    },
    /// Writing a FAT filesystem failed.
    #[error("partition {partition}: FAT")]
    Fat {
        /// Partition label.
        partition: String,
        /// The cause.
        #[source]
        source: kiln_fat::Error,
    },
    /// Writing an ext4 filesystem failed.
    #[error("partition {partition}: ext4")]
    Ext4 {
        /// Partition label.
        partition: String,
        /// The cause.
        #[source]
        source: kiln_ext4::Error,
    },
    /// The application preload inputs are invalid or unreadable.
    #[error("partition {partition}: app preload")]
    App {
        /// Partition label.
        partition: String,
        /// The cause (boxed: the OCI error is large).
        #[source]
        source: Box<kiln_oci::Error>,
    },
    /// Writing or reading the partition table failed.
    #[error("partition table")]
    Table(#[source] kiln_part::Error),
    /// The image is larger than the target medium.
    #[error("image needs {need} bytes ({need_h}) but medium {medium} holds {have} bytes ({have_h}); {hint}")]
    TooBig {
        /// Medium name.
        medium: String,
        /// Bytes needed.
        need: u64,
        /// Human readable.
        need_h: String,
        /// Medium bytes.
        have: u64,
        /// Human readable.
        have_h: String,
        /// What to do.
        hint: String,
    },
    /// A size that cannot be honoured (e.g. fixed data size too small).
    #[error("partition {partition}: {reason}")]
    Layout {
        /// Partition label.
        partition: String,
        /// Why.
        reason: String,
    },
    /// The output could not be created or written.
    #[error("{}: {op}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An output path holds something kiln must not replace: only
    /// regular files are ever created or replaced.
    #[error("{}: refusing to replace {what} (kiln only creates or replaces regular files)", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What stands there ("a block device", "a directory", ...).
        what: &'static str,
    },
    /// A key or signature that cannot be used (malformed, wrong
    /// passphrase, made by another key).
    #[error("{}", path.display())]
    Sign {
        /// The key or signature file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: kiln_sign::Error,
    },
    /// An image given to inspect is not understood.
    #[error("{}: {reason}", path.display())]
    Image {
        /// The image.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Exit-code class: 2 for bad input (profile, recipe, sources,
    /// layout, medium), 3 for output/I-O problems, 1 otherwise. A stage
    /// error takes the class its format crate gives it (an ext4 tree
    /// that does not fit is bad input, a failed write is an output
    /// error).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Recipe(_)
            | Error::Source { .. }
            | Error::App { .. }
            | Error::TooBig { .. }
            | Error::Layout { .. }
            | Error::Image { .. } => 2,
            Error::Sign { source, .. } => source.exit_code(),
            Error::Fat { source, .. } => source.exit_code(),
            Error::Ext4 { source, .. } => source.exit_code(),
            Error::Table(source) => source.exit_code(),
            Error::Output { .. } | Error::NotRegular { .. } => 3,
        }
    }
}

/// Maps an I/O error on output `path` while doing `op` to
/// [`Error::Output`] (exit code 3).
pub(crate) fn out_err<'a>(
    path: &'a std::path::Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Output {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// The error and its causes on one line, `: `-separated.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16 finding 17: `partition : X.tar.gz: X.tar.gz: ...` named
    /// the archive twice (and no partition).
    #[test]
    fn source_errors_name_the_input_once() {
        let e = |input: &str, source| Error::Source {
            partition: "rootfs.ext4".into(),
            input: input.into(),
            source,
        };
        let malformed = kiln_tree::Error::MalformedArchive {
            archive: "x.tar.gz".into(),
            source: std::io::Error::other("corrupt deflate stream"),
        };
        assert_eq!(
            e("x.tar.gz", malformed).to_string(),
            "partition rootfs.ext4"
        );
        let entry = kiln_tree::Error::HostilePath {
            path: "../evil".into(),
            reason: "escapes the tree",
        };
        assert_eq!(
            e("x.tar.gz", entry).to_string(),
            "partition rootfs.ext4: x.tar.gz"
        );
    }
}
