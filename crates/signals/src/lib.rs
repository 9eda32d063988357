//! `signals`: readers for the 1D and 3D data of the seed's section 3 (ECG records, volumes).
//! Kept apart from `nn` because they are file formats of their own fields (PhysioNet WFDB,
//! NIfTI), with nothing to do with layers or training.
//!
//! - [`wfdb`]: PhysioNet WFDB records: the `.hea` header, format-212 `.dat` signals (checksums
//!   verified), and MIT-format `.atr` beat annotations;
//! - [`ecg`]: beat windows around the R peaks with their AAMI classes;
//! - [`nifti`]: NIfTI-1 volumes (`.nii`, `.nii.gz`), either byte order, common data types.
#![warn(missing_docs)]

pub mod ecg;
pub mod nifti;
pub mod wfdb;

use std::path::PathBuf;

/// Errors of the readers, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file's content is not what its format says.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with a line or byte offset where it helps.
        reason: String,
    },
}

/// Result of the readers.
pub type Result<T> = std::result::Result<T, Error>;
