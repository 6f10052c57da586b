//! A stored key's bytes in 16 bytes: inline up to 15, on the heap beyond.
//!
//! A key flood is an attack on memory, and a `Box<[u8]>` key costs its 16
//! bytes in the table plus a heap block (32 bytes with glibc for a key like
//! `user:123456`). Keys that fit in the box's own 16 bytes (most user ids,
//! every IPv4 address key) are kept there instead, with no allocation; the
//! table entry stays the size it was. Hashing is the slice's, so a lookup
//! by borrowed bytes finds the key whatever its representation.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use compact_bytes::CompactBytesSlice;

/// The bytes of a stored key.
pub struct Key(CompactBytesSlice);

const _: () = assert!(std::mem::size_of::<Key>() == std::mem::size_of::<Box<[u8]>>());

impl Key {
    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// Whether the bytes live on the heap.
    #[cfg(test)]
    fn spilled(&self) -> bool {
        self.0.spilled()
    }
}

impl From<&[u8]> for Key {
    #[inline]
    fn from(bytes: &[u8]) -> Self {
        Key(CompactBytesSlice::new(bytes))
    }
}

impl Borrow<[u8]> for Key {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

// Hash and Eq must agree with `[u8]`'s for `Borrow` lookups.
impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes kept inline, with no heap allocation.
    const INLINE: usize = CompactBytesSlice::MAX_INLINE;

    #[test]
    fn short_keys_are_inline_and_long_ones_on_the_heap() {
        for len in 0..=64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let key = Key::from(bytes.as_slice());
            assert_eq!(key.as_bytes(), bytes.as_slice());
            assert_eq!(key.spilled(), len > INLINE, "len {len}");
        }
        assert_eq!(INLINE, 15);
    }

    #[test]
    fn hashes_and_compares_as_its_bytes() {
        let hasher = ahash::RandomState::new();
        for bytes in [
            &b""[..],
            b"user:123456",
            b"\xed\xa0\x80 lone surrogate",
            &[0xff; 40],
        ] {
            let key = Key::from(bytes);
            assert_eq!(hasher.hash_one(&key), hasher.hash_one(bytes));
            assert_eq!(key, Key::from(bytes));
        }
        // Same bytes, one inline and one spilled, never equal by accident.
        assert_ne!(Key::from(&[1u8; 15][..]), Key::from(&[1u8; 16][..]));
    }
}
