//! Memory pages of the KV cache given back to the operating system when the positions they
//! hold are no longer needed, so that the process's resident memory follows the sequences
//! running rather than the longest ones it ever ran.
//!
//! The buffer keeps its address space: a page given back reads as zeros and becomes resident
//! again only when it is written.

use super::kv_element::KvElement;

/// Gives back every whole memory page inside `elements`. The elements of those pages read as
/// zero afterwards; the elements of the partial pages at either end are left as they are.
pub(crate) fn give_back<E: KvElement>(elements: &mut [E]) {
    let start = elements.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(elements);
    let page = page_size();
    let first = start.next_multiple_of(page);
    let last = end - end % page;
    if last > first {
        advise_unneeded(first, last - first);
    }
}

/// The size of a memory page of this process.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn page_size() -> usize {
    static PAGE_SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: `sysconf` reads a constant of the system; it has no preconditions.
    *PAGE_SIZE.get_or_init(|| {
        usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
    })
}

/// Tells the kernel that the pages `[address, address + length)` are not needed.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise_unneeded(address: usize, length: usize) {
    // SAFETY: the caller passes whole pages inside a slice it borrows mutably, so no other
    // reference sees them change. They are this process's private anonymous memory (the
    // heap), which `MADV_DONTNEED` leaves mapped and reads back as zero bytes, which every
    // `KvElement` reads as zero.
    // A failure only leaves the pages resident, which is harmless.
    unsafe {
        libc::madvise(address as *mut libc::c_void, length, libc::MADV_DONTNEED);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn page_size() -> usize {
    4096
}

#[cfg(not(target_os = "linux"))]
fn advise_unneeded(_address: usize, _length: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_pages_read_as_zeros_and_partial_pages_keep_their_floats() {
        let floats_per_page = page_size() / 4;
        let mut buffer = vec![1.0_f32; 8 * floats_per_page];
        let start = floats_per_page / 2;
        give_back(&mut buffer[start..7 * floats_per_page]);
        let aligned = buffer.as_ptr().align_offset(page_size());
        let first_whole =
            start + (aligned + floats_per_page - start % floats_per_page) % floats_per_page;
        let zeros = buffer.iter().filter(|&&value| value == 0.0).count();
        assert!(zeros >= 5 * floats_per_page, "{zeros} floats zeroed");
        assert_eq!(buffer[start - 1], 1.0);
        assert_eq!(buffer[7 * floats_per_page], 1.0);
        assert_eq!(buffer[first_whole - 1], 1.0);
        assert_eq!(buffer[first_whole], 0.0);
    }

    #[test]
    fn a_slice_smaller_than_a_page_is_left_alone() {
        let mut buffer = vec![2.0_f32; 16];
        give_back(&mut buffer);
        assert!(buffer.iter().all(|&value| value == 2.0));
    }
}
