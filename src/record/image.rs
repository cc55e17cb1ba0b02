//! Run files as in-memory HDF5 images.
//!
//! HDF5 opens files without close-on-exec and holds an `flock` on them while they are open.
//! A child process that any thread starts meanwhile inherits the descriptor, and with it the
//! lock, for the child's whole life: the next open of that file then fails with "unable to
//! lock file, errno = 11" although its writer has long closed it (this was the flake that
//! had the tests switch HDF5 file locking off). So run files never go through HDF5's file
//! layer: HDF5 builds and reads them in memory (its core driver, no backing store, under a
//! name that cannot exist on disk), and Rust's I/O, which opens every file close-on-exec,
//! moves the bytes to and from disk (atomically, see [`crate::fs`]).
use crate::{Error, Result};
use hdf5_sys::h5f::{H5Fget_file_image, H5Fopen, H5F_ACC_RDONLY};
use hdf5_sys::h5p::H5Pset_file_image;
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};

/// Growth step of an in-memory file.
const INCREMENT: usize = 1 << 16;

/// A name for an in-memory file that no file on disk can have (`/dev/null` is not a
/// directory), unique in this process as HDF5 requires of open files.
fn memory_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "/dev/null/supernet-image-{}-{}.h5",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new, empty HDF5 file in memory.
pub fn create() -> Result<hdf5::File> {
    Ok(hdf5::File::with_options()
        .with_fapl(|p| p.core_options(INCREMENT, false))
        .create(memory_name())?)
}

/// The bytes of an in-memory file, as they would be on disk.
pub fn to_bytes(file: &hdf5::File) -> Result<Vec<u8>> {
    file.flush()?;
    hdf5::sync::sync(|| {
        // SAFETY: a null buffer asks for the size only; the second call fills exactly that
        // many bytes of a buffer that long.
        let size = unsafe { H5Fget_file_image(file.id(), std::ptr::null_mut(), 0) };
        let len = usize::try_from(size)
            .map_err(|_| Error::Other("HDF5 could not report the size of a file image".into()))?;
        let mut bytes = vec![0u8; len];
        let written = unsafe { H5Fget_file_image(file.id(), bytes.as_mut_ptr().cast(), len) };
        if written < 0 || written as usize != len {
            return Err(Error::Other("HDF5 could not copy a file image".into()));
        }
        Ok(bytes)
    })
}

/// Open the HDF5 file whose bytes are `bytes`, read-only, in memory.
pub fn open(bytes: &[u8]) -> Result<hdf5::File> {
    if bytes.is_empty() {
        return Err(Error::Other("an empty file is not HDF5".into()));
    }
    let fapl = hdf5::plist::FileAccess::build()
        .core_options(INCREMENT, false)
        .finish()?;
    let name = CString::new(memory_name()).expect("no NUL in the name");
    let id = hdf5::sync::sync(|| {
        // SAFETY: HDF5 copies the image into the property list; `bytes` outlives the call.
        let set =
            unsafe { H5Pset_file_image(fapl.id(), bytes.as_ptr().cast_mut().cast(), bytes.len()) };
        if set < 0 {
            return -1;
        }
        // SAFETY: a valid NUL-terminated name and a live property list.
        unsafe { H5Fopen(name.as_ptr(), H5F_ACC_RDONLY, fapl.id()) }
    });
    if id < 0 {
        return Err(Error::Other(
            "not a readable HDF5 file (no HDF5 signature, or a truncated file)".into(),
        ));
    }
    // SAFETY: `id` is a file identifier HDF5 just returned; the handle owns it from here.
    Ok(unsafe { hdf5::from_id::<hdf5::File>(id) }?)
}
