//! Raw images: the virtual disk byte for byte.
//!
//! The writer leaves every region it is not sent as a hole (`set_len`
//! extends the file without allocating), so a mostly-empty disk costs only
//! its data on a file system with sparse files. The reader reports holes
//! through [`DataRegions`](crate::DataRegions) (SEEK_DATA/SEEK_HOLE for files).

mod reader;
mod writer;

pub use reader::RawReader;
pub use writer::RawWriter;
