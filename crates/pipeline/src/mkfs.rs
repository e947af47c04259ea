//! `kiln mkfs ext4`: a rootless, tar-aware replacement for `mke2fs -d`.
//! Writes one ext4 filesystem from a directory or tar archive into a new
//! file, or into a window of an existing image (`offset`).

use crate::content::feed_input;
use crate::outpath::remove_partial;
use crate::Error;
use kiln_ext4::{Ext4Estimator, Ext4Options, Ext4Writer};
use kiln_recipe::{InputPath, Location};
use kiln_tree::{SourceError, SourceOptions, Timestamp};
use kiln_units::SubRegion;
use std::fs::OpenOptions;
use std::path::PathBuf;

/// Size of the filesystem to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MkfsSize {
    /// Exactly this many bytes.
    Bytes(u64),
    /// The smallest size that holds the tree, plus `headroom` bytes.
    Min {
        /// Free space to leave, in bytes.
        headroom: u64,
    },
}

/// A `kiln mkfs ext4` request.
#[derive(Debug, Clone)]
pub struct MkfsRequest {
    /// Directory or tar archive (plain, gz, xz, zst).
    pub source: PathBuf,
    /// Size.
    pub size: MkfsSize,
    /// Volume label.
    pub label: String,
    /// Filesystem UUID (RFC byte order).
    pub uuid: [u8; 16],
    /// Directory hash seed.
    pub hash_seed: [u8; 16],
    /// Inode ratio in bytes per inode.
    pub inode_ratio: Option<u64>,
    /// Times of every entry are clamped to this, and filesystem times set
    /// to it.
    pub timestamp: i64,
    /// Owner of every entry (rootless images of a user's directory).
    pub force_owner: Option<(u32, u32)>,
    /// Output file.
    pub output: PathBuf,
    /// Write into an existing file at this byte offset instead of
    /// creating it.
    pub offset: Option<u64>,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MkfsReport {
    /// Filesystem size in bytes.
    pub size_bytes: u64,
    /// Inodes in use.
    pub inodes_used: u64,
    /// Blocks in use.
    pub blocks_used: u64,
}

/// Makes the filesystem.
pub fn mkfs_ext4(req: &MkfsRequest) -> Result<MkfsReport, Error> {
    // Only regular files are written, checked before any work.
    match req.offset {
        Some(_) => crate::outpath::check_existing_regular(&req.output)?,
        None => crate::outpath::check_all([req.output.as_path()])?,
    }
    let job = Job::new(req)?;
    let size = job.size()?;
    // A size ext4 cannot have is bad input, refused before a file of that
    // size is created (which fails as an output error, or fills a disk);
    // checked before rounding down so the error shows the size asked for.
    job.opts(size).check().map_err(|e| job.ext4_err(e))?;
    let size = size - size % 4096;
    let (mut file, tmp) = job.open_output(size)?;
    let result = job.write(&mut file, size);
    match (&result, tmp) {
        (Ok(_), Some(tmp)) => {
            let moved = crate::outpath::check_replaceable(&req.output).and_then(|()| {
                std::fs::rename(&tmp, &req.output)
                    .map_err(job.out_err("cannot move the filesystem into place"))
            });
            if moved.is_err() {
                remove_partial(&tmp);
            }
            moved?;
        }
        (Err(_), Some(tmp)) => remove_partial(&tmp),
        _ => {}
    }
    result
}

/// A mkfs request with what is derived from it once.
struct Job<'a> {
    req: &'a MkfsRequest,
    /// The source as an input path (errors name `--source`).
    input: InputPath,
    src_opts: SourceOptions,
    /// Errors name the filesystem by its label, or by its file without
    /// one.
    label: String,
    time: Timestamp,
}

impl<'a> Job<'a> {
    fn new(req: &'a MkfsRequest) -> Result<Self, Error> {
        let time = Timestamp::new(req.timestamp, 0);
        let src_opts = SourceOptions {
            clamp_time: Some(time),
            force_owner: req.force_owner,
            max_file_size: if let MkfsSize::Bytes(b) = req.size {
                Some(b)
            } else {
                None
            },
        };
        let input = InputPath {
            path: req.source.clone(),
            key: "--source".into(),
            at: Location {
                file: req.source.clone(),
                line: 0,
                column: 0,
            },
        };
        input.check_exists()?;
        let label = if req.label.is_empty() {
            req.output.file_name().map_or_else(
                || req.output.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        } else {
            req.label.clone()
        };
        Ok(Self {
            req,
            input,
            src_opts,
            label,
            time,
        })
    }

    /// The filesystem's options at `size` bytes.
    fn opts(&self, size: u64) -> Ext4Options {
        let req = self.req;
        let mut o = Ext4Options::new(size)
            .label(&req.label)
            .uuid(req.uuid)
            .hash_seed(req.hash_seed)
            .timestamp(self.time);
        if let Some(r) = req.inode_ratio {
            o = o.inode_ratio(r);
        }
        o
    }

    fn ext4_err(&self, source: kiln_ext4::Error) -> Error {
        Error::Ext4 {
            partition: self.label.clone(),
            source,
        }
    }

    fn src_err(&self, e: SourceError<kiln_ext4::Error>) -> Error {
        match e {
            SourceError::Source(source) => Error::Source {
                partition: self.label.clone(),
                input: self.req.source.display().to_string(),
                source,
            },
            SourceError::Sink(source) => self.ext4_err(source),
        }
    }

    fn out_err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        let path = self.req.output.clone();
        move |source| Error::Output { path, op, source }
    }

    /// The size asked for, or the smallest that holds the tree plus the
    /// headroom (bytes).
    fn size(&self) -> Result<u64, Error> {
        Ok(match self.req.size {
            MkfsSize::Bytes(b) => b,
            MkfsSize::Min { headroom } => {
                let mut est = Ext4Estimator::new();
                feed_input(&self.input, &self.src_opts, &mut est).map_err(|e| self.src_err(e))?;
                est.min_size_bytes(&self.opts(0), headroom)
                    .map_err(|e| self.ext4_err(e))?
            }
        })
    }

    /// The file written: the existing target (`offset`), or a new
    /// temporary file of `size` bytes beside the output (returned too).
    fn open_output(&self, size: u64) -> Result<(std::fs::File, Option<PathBuf>), Error> {
        let req = self.req;
        if req.offset.is_some() {
            crate::outpath::check_existing_regular(&req.output)?;
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&req.output)
                .map_err(self.out_err("cannot open the target image"))?;
            return Ok((f, None));
        }
        let (tmp, f) = crate::outpath::create_partial(&req.output)?;
        if let Err(source) = f.set_len(size) {
            // Not yet behind the caller's cleanup.
            remove_partial(&tmp);
            return Err(Error::Output {
                path: req.output.clone(),
                op: "cannot size the output file",
                source,
            });
        }
        Ok((f, Some(tmp)))
    }

    /// Writes the filesystem of `size` bytes into `file` (at the offset).
    fn write(&self, file: &mut std::fs::File, size: u64) -> Result<MkfsReport, Error> {
        let offset = self.req.offset.unwrap_or(0);
        if let Some(off) = self.req.offset {
            let have = file
                .metadata()
                .map_err(self.out_err("cannot stat the target image"))?
                .len();
            if off.checked_add(size).is_none_or(|end| end > have) {
                return Err(Error::Layout {
                    partition: self.label.clone(),
                    reason: format!(
                        "{size} bytes at offset {off} do not fit in the {have}-byte target"
                    ),
                });
            }
        }
        let mut w = Ext4Writer::new(SubRegion::new(&mut *file, offset, size), self.opts(size))
            .map_err(|e| self.ext4_err(e))?;
        feed_input(&self.input, &self.src_opts, &mut w).map_err(|e| self.src_err(e))?;
        let r = w.finish().map_err(|e| self.ext4_err(e))?;
        file.sync_all()
            .map_err(self.out_err("cannot flush the output"))?;
        Ok(MkfsReport {
            size_bytes: r.size_bytes,
            inodes_used: r.inodes_count - r.free_inodes,
            blocks_used: r.blocks_count - r.free_blocks,
        })
    }
}
