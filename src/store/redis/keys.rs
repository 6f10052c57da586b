//! Redis key layout: `{prefix}:{limiter}:{{digest}}:{rule}`.
//!
//! `limiter` is a short digest of the limiter's identity (algorithm and
//! rules), so `clear()` can find this limiter's keys and no other's with one
//! SCAN pattern; `digest` hashes the length-prefixed identity and user key,
//! so any user key (braces, `*`, NUL, a megabyte, unicode, empty) gives a
//! short key, different parts never collide, and the hash tag puts every
//! rule of one decision in the same cluster slot.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::limiter::Spec;

/// How a limiter names its keys.
#[derive(Debug, Clone)]
pub struct KeyLayout {
    prefix: String,
    /// The hash state after the length-prefixed identity: each key's digest
    /// continues from a clone of it.
    identity: Sha256,
    limiter: String,
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    push_hex(&mut out, bytes);
    out
}

fn absorb(hasher: &mut Sha256, part: &[u8]) {
    hasher.update((part.len() as u64).to_be_bytes());
    hasher.update(part);
}

impl KeyLayout {
    /// The layout of `spec` under `prefix`.
    pub fn new(prefix: &str, spec: &Spec) -> Self {
        let identity = format!("{:?}|{:?}|{:?}", spec.kind, spec.quotas, spec.burst).into_bytes();
        let limiter = hex(&Sha256::digest(&identity)[..4]);
        let mut hasher = Sha256::new();
        absorb(&mut hasher, &identity);
        Self {
            prefix: prefix.to_owned(),
            identity: hasher,
            limiter,
        }
    }

    /// The Redis key of rule `rule` for the user key `key`.
    pub fn key(&self, key: &[u8], rule: usize) -> String {
        let mut hasher = self.identity.clone();
        absorb(&mut hasher, key);
        let digest = hasher.finalize();
        let mut out = String::with_capacity(self.prefix.len() + self.limiter.len() + 32 + 8);
        out.push_str(&self.prefix);
        out.push(':');
        out.push_str(&self.limiter);
        out.push_str(":{");
        push_hex(&mut out, &digest[..16]);
        out.push_str("}:");
        let _ = write!(out, "{rule}");
        out
    }

    /// A SCAN pattern matching exactly this limiter's keys.
    pub fn pattern(&self) -> String {
        let mut pattern = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        format!("{pattern}:{}:*", self.limiter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::AlgorithmKind;
    use crate::rate::Quota;

    fn layout(prefix: &str) -> KeyLayout {
        let spec = Spec::new(
            AlgorithmKind::Fixed,
            vec![Quota::per_seconds(5, 60).unwrap()],
            None,
        )
        .unwrap();
        KeyLayout::new(prefix, &spec)
    }

    #[test]
    fn keys_are_bounded_tagged_and_distinct() {
        let l = layout("rl");
        let huge = vec![b'x'; 1 << 20];
        let odd: [&[u8]; 6] = [b"", b"{a}", b"*", b"\0", "ключ".as_bytes(), &huge];
        let mut seen = std::collections::HashSet::new();
        for key in odd {
            let k = l.key(key, 0);
            assert!(k.len() <= 128, "{k}");
            assert_eq!(k.matches('{').count(), 1);
            assert!(seen.insert(k));
        }
        let (a, b) = (l.key(b"k", 0), l.key(b"k", 1));
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(tag(&a), tag(&b), "one decision, one slot");
        assert_ne!(a, b);
    }

    #[test]
    fn identities_and_prefixes_separate_limiters() {
        let spec = Spec::new(
            AlgorithmKind::Gcra,
            vec![Quota::per_seconds(5, 60).unwrap()],
            None,
        )
        .unwrap();
        let other = KeyLayout::new("rl", &spec);
        assert_ne!(layout("rl").key(b"k", 0), other.key(b"k", 0));
        assert_ne!(layout("a").key(b"k", 0), layout("b").key(b"k", 0));
        assert_eq!(
            layout("a*[").pattern(),
            format!("a\\*\\[:{}:*", layout("x").limiter)
        );
    }
}
