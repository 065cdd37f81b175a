//! Checks that a shared library file is whole and built for this process before `dlopen` sees
//! it. The loader maps a library by the sizes its headers declare: a truncated copy is mapped
//! past its end, and the first touch of a missing page kills the process with SIGBUS and no
//! message. A file refused here is named with what is wrong instead.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Why a file is no shared library this process can load.
#[derive(Debug, thiserror::Error)]
pub enum LibraryFileError {
    /// Nothing is at the path.
    #[error("no such file")]
    Missing,
    /// The path is a directory or another non-regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The file cannot be opened or read.
    #[error("cannot read it: {0}")]
    Unreadable(#[from] std::io::Error),
    /// The file does not start with the ELF magic number.
    #[error("not an ELF shared library (it does not start with \\x7fELF)")]
    NotElf,
    /// The file is an ELF file for another word size, byte order or machine.
    #[error("built for another architecture ({0})")]
    WrongArchitecture(String),
    /// The file is an ELF executable or object file, not a shared object.
    #[error("not a shared object (ELF type {0}, a shared object is 3)")]
    NotSharedObject(u16),
    /// A header entry is smaller than the ELF format's entry of that kind.
    #[error("malformed: its {0} entries are too small")]
    Malformed(&'static str),
    /// A part the headers declare ends past the end of the file.
    #[error(
        "truncated: its {part} ends at byte {end} but the file has only {len} bytes \
         (an interrupted copy or download?)"
    )]
    Truncated {
        /// The part that lies past the end.
        part: &'static str,
        /// Where it ends.
        end: u64,
        /// The file's length.
        len: u64,
    },
}

/// Where the fields this check reads lie in the ELF header and a program header, for the word
/// size of this process (ELF64 or ELF32).
struct Layout {
    class: u8,
    header_len: usize,
    word: usize,
    phoff: usize,
    shoff: usize,
    phentsize: usize,
    phnum: usize,
    shentsize: usize,
    shnum: usize,
    p_offset: usize,
    p_filesz: usize,
}

#[cfg(target_pointer_width = "64")]
const LAYOUT: Layout = Layout {
    class: 2,
    header_len: 64,
    word: 8,
    phoff: 32,
    shoff: 40,
    phentsize: 54,
    phnum: 56,
    shentsize: 58,
    shnum: 60,
    p_offset: 8,
    p_filesz: 32,
};

#[cfg(target_pointer_width = "32")]
const LAYOUT: Layout = Layout {
    class: 1,
    header_len: 52,
    word: 4,
    phoff: 28,
    shoff: 32,
    phentsize: 42,
    phnum: 44,
    shentsize: 46,
    shnum: 48,
    p_offset: 4,
    p_filesz: 16,
};

/// `EI_DATA` of this process's byte order.
const DATA: u8 = if cfg!(target_endian = "little") { 1 } else { 2 };

/// `e_machine` of this process's architecture, where known.
const MACHINE: Option<u16> = if cfg!(target_arch = "x86_64") {
    Some(62)
} else if cfg!(target_arch = "aarch64") {
    Some(183)
} else {
    None
};

const ET_DYN: u16 = 3;
const PT_LOAD: u64 = 1;

/// Checks that `path` is a readable, whole ELF shared object for this process: its headers,
/// its program and section header tables and every loadable segment lie within the file.
pub fn check(path: &Path) -> Result<(), LibraryFileError> {
    let metadata = std::fs::metadata(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => LibraryFileError::Missing,
        _ => LibraryFileError::Unreadable(error),
    })?;
    if !metadata.is_file() {
        return Err(LibraryFileError::NotAFile);
    }
    let mut file = File::open(path)?;
    let len = metadata.len();
    let mut header = Vec::new();
    (&mut file)
        .take(LAYOUT.header_len as u64)
        .read_to_end(&mut header)?;
    if !header.starts_with(b"\x7fELF") {
        return Err(LibraryFileError::NotElf);
    }
    within(len, 0, LAYOUT.header_len as u64, "ELF header")?;
    check_ident(&header)?;
    let phoff = field(&header, LAYOUT.phoff, LAYOUT.word);
    let phentsize = field(&header, LAYOUT.phentsize, 2);
    let phnum = field(&header, LAYOUT.phnum, 2);
    let shoff = field(&header, LAYOUT.shoff, LAYOUT.word);
    let shnum = field(&header, LAYOUT.shnum, 2);
    let shentsize = field(&header, LAYOUT.shentsize, 2);
    if shoff != 0 {
        // with more sections than e_shnum holds, e_shnum is 0 and the first entry counts them
        let size = shnum.max(1).saturating_mul(shentsize);
        within(len, shoff, size, "section header table")?;
    }
    let programs = read_part(
        &mut file,
        len,
        phoff,
        phnum.saturating_mul(phentsize),
        "program header table",
    )?;
    check_segments(&programs, phentsize, len)
}

/// Checks the word size, byte order, type and machine of the ELF header.
fn check_ident(header: &[u8]) -> Result<(), LibraryFileError> {
    let (class, data) = (field(header, 4, 1) as u8, field(header, 5, 1) as u8);
    if class != LAYOUT.class {
        return Err(LibraryFileError::WrongArchitecture(format!(
            "ELF class {class}, this process needs {}",
            LAYOUT.class
        )));
    }
    if data != DATA {
        return Err(LibraryFileError::WrongArchitecture(format!(
            "byte order {data}, this process needs {DATA}"
        )));
    }
    let kind = field(header, 16, 2) as u16;
    if kind != ET_DYN {
        return Err(LibraryFileError::NotSharedObject(kind));
    }
    let machine = field(header, 18, 2) as u16;
    match MACHINE {
        Some(expected) if machine != expected => Err(LibraryFileError::WrongArchitecture(format!(
            "ELF machine {machine}, this process needs {expected}"
        ))),
        _ => Ok(()),
    }
}

/// Checks that every loadable segment of the program header table `programs` lies within
/// the file of `len` bytes.
fn check_segments(programs: &[u8], entry_size: u64, len: u64) -> Result<(), LibraryFileError> {
    if programs.is_empty() {
        return Ok(());
    }
    let entry_size = usize::try_from(entry_size).unwrap_or(usize::MAX);
    if entry_size < LAYOUT.p_filesz + LAYOUT.word {
        return Err(LibraryFileError::Malformed("program header"));
    }
    for entry in programs.chunks_exact(entry_size) {
        if field(entry, 0, 4) == PT_LOAD {
            let offset = field(entry, LAYOUT.p_offset, LAYOUT.word);
            let size = field(entry, LAYOUT.p_filesz, LAYOUT.word);
            within(len, offset, size, "loadable segment")?;
        }
    }
    Ok(())
}

/// Reads the `size` bytes at `offset`, after checking that they lie within the file.
fn read_part(
    file: &mut File,
    len: u64,
    offset: u64,
    size: u64,
    part: &'static str,
) -> Result<Vec<u8>, LibraryFileError> {
    within(len, offset, size, part)?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(offset))?;
    file.take(size).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Fails when `size` bytes at `offset` end past a file of `len` bytes.
fn within(len: u64, offset: u64, size: u64, part: &'static str) -> Result<(), LibraryFileError> {
    let end = offset.saturating_add(size);
    if end > len {
        return Err(LibraryFileError::Truncated { part, end, len });
    }
    Ok(())
}

/// The unsigned field of `width` bytes (2, 4 or 8) at `at`, in this process's byte order;
/// 0 where `bytes` is too short (the callers checked the lengths).
fn field(bytes: &[u8], at: usize, width: usize) -> u64 {
    let Some(slice) = bytes.get(at..at + width) else {
        return 0;
    };
    let mut buffer = [0u8; 8];
    if cfg!(target_endian = "little") {
        buffer[..width].copy_from_slice(slice);
        u64::from_le_bytes(buffer)
    } else {
        buffer[8 - width..].copy_from_slice(slice);
        u64::from_be_bytes(buffer)
    }
}

#[cfg(all(test, target_pointer_width = "64", target_endian = "little"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A minimal ELF64 shared object: the header, one loadable segment covering the whole
    /// file, and a section header table of `sections` entries at its end.
    fn library(sections: u16) -> Vec<u8> {
        let section_table = 64 + 56;
        let len = section_table + u64::from(sections) * 64;
        let mut bytes = vec![0u8; usize::try_from(len).unwrap()];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[6] = 1;
        bytes[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        bytes[18..20].copy_from_slice(&MACHINE.unwrap_or(0).to_le_bytes());
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[40..48].copy_from_slice(&section_table.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&1u16.to_le_bytes());
        bytes[58..60].copy_from_slice(&64u16.to_le_bytes());
        bytes[60..62].copy_from_slice(&sections.to_le_bytes());
        bytes[64..68].copy_from_slice(&1u32.to_le_bytes());
        bytes[64 + 32..64 + 40].copy_from_slice(&len.to_le_bytes());
        bytes
    }

    fn check_bytes(bytes: &[u8]) -> Result<(), LibraryFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libonnxruntime.so");
        std::fs::write(&path, bytes).unwrap();
        check(&path)
    }

    #[test]
    fn a_whole_shared_object_passes() {
        check_bytes(&library(4)).unwrap();
    }

    #[test]
    fn a_truncated_library_is_refused_with_what_is_missing() {
        let whole = library(4);
        let error = check_bytes(&whole[..whole.len() / 2]).unwrap_err();
        assert!(
            matches!(error, LibraryFileError::Truncated { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("truncated"), "{error}");
        let error = check_bytes(&whole[..whole.len() - 1]).unwrap_err();
        assert!(
            error.to_string().contains("section header table"),
            "{error}"
        );
        let error = check_bytes(&whole[..40]).unwrap_err();
        assert!(error.to_string().contains("ELF header"), "{error}");
    }

    #[test]
    fn a_segment_past_the_end_is_refused() {
        let mut bytes = library(0);
        bytes[40..48].copy_from_slice(&0u64.to_le_bytes());
        bytes[64 + 32..64 + 40].copy_from_slice(&1_000_000u64.to_le_bytes());
        let error = check_bytes(&bytes).unwrap_err();
        assert!(error.to_string().contains("loadable segment"), "{error}");
    }

    #[test]
    fn other_files_are_named_for_what_they_are() {
        assert!(matches!(
            check_bytes(b"not a library").unwrap_err(),
            LibraryFileError::NotElf
        ));
        assert!(matches!(
            check_bytes(&[b"\x7fELF".as_slice(), &[0; 60]].concat()).unwrap_err(),
            LibraryFileError::WrongArchitecture(_)
        ));
        let mut executable = library(1);
        executable[16] = 2;
        assert!(matches!(
            check_bytes(&executable).unwrap_err(),
            LibraryFileError::NotSharedObject(2)
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            check(dir.path()).unwrap_err(),
            LibraryFileError::NotAFile
        ));
        assert!(matches!(
            check(&dir.path().join("absent.so")).unwrap_err(),
            LibraryFileError::Missing
        ));
    }
}
