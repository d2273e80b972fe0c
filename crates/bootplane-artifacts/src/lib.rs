//! OS artifacts: where they live ([`content::ContentStore`], content-addressed by
//! sha256 under the data directory), how they arrive ([`download`]: resumable with HTTP
//! Range, verified before anything is recorded; [`release`]: Fedora CoreOS stream
//! metadata and Flatcar release directories), and how they are served
//! ([`range`]: the pure HTTP decision for Range/HEAD/ETag requests). Recording bundles in
//! the store is the caller's job, and happens only after every file of a bundle is
//! verified, so an interrupted or corrupted download never becomes a bundle.

pub mod content;
pub mod download;
pub mod range;
pub mod release;

pub use content::ContentStore;
