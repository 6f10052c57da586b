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
        let mut out = self.base(key);
        let _ = write!(out, "{rule}");
        out
    }

    /// `prefix:limiter:{digest}:`, to which each of `key`'s Redis keys adds
    /// its own name (a rule's index, `ban`, `refusals`): one hash tag, so
    /// one slot for all of them.
    pub fn base(&self, key: &[u8]) -> String {
        let mut hasher = self.identity.clone();
        absorb(&mut hasher, key);
        let digest = hasher.finalize();
        let mut out = String::with_capacity(self.prefix.len() + self.limiter.len() + 48);
        out.push_str(&self.prefix);
        out.push(':');
        out.push_str(&self.limiter);
        out.push_str(":{");
        push_hex(&mut out, &digest[..16]);
        out.push_str("}:");
        out
    }

    pub fn pattern(&self) -> String {
        let mut pattern = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        let digest = "[0-9a-f]".repeat(32);
        format!("{pattern}:{}:{{{digest}}}:*", self.limiter)
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
        let digest = "[0-9a-f]".repeat(32);
        assert_eq!(
            layout("a*[").pattern(),
            format!("a\\*\\[:{}:{{{digest}}}:*", layout("x").limiter)
        );
    }

    /// Redis's glob, for the patterns `pattern` makes: `\\x` is `x`, `*` any
    /// run, `[...]` one character of a class with ranges.
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.first() {
            None => text.is_empty(),
            Some(b'*') => (0..=text.len()).any(|i| glob(&pattern[1..], &text[i..])),
            Some(b'[') => {
                let end = pattern.iter().position(|&c| c == b']').unwrap();
                let class = &pattern[1..end];
                let Some(&c) = text.first() else { return false };
                let hit = class
                    .windows(3)
                    .any(|w| w[1] == b'-' && w[0] <= c && c <= w[2])
                    || class.contains(&c);
                hit && glob(&pattern[end + 1..], &text[1..])
            }
            Some(b'\\') => text.first() == Some(&pattern[1]) && glob(&pattern[2..], &text[1..]),
            Some(&p) => text.first() == Some(&p) && glob(&pattern[1..], &text[1..]),
        }
    }

    #[test]
    fn a_pattern_matches_its_own_keys_only() {
        let mine = layout("app");
        // A limiter whose prefix is this one's prefix and identity: its keys
        // start with this limiter's "app:<identity>:".
        let nested = layout(&format!("app:{}", mine.limiter));
        let pattern = mine.pattern();
        for rule in 0..2 {
            let own = mine.key(b"user:1", rule);
            assert!(glob(pattern.as_bytes(), own.as_bytes()), "{own}");
            assert!(glob(pattern.as_bytes(), format!("{own}:s").as_bytes()));
            let other = nested.key(b"user:1", rule);
            assert!(other.starts_with(&format!("app:{}:", mine.limiter)));
            assert!(!glob(pattern.as_bytes(), other.as_bytes()), "{other}");
        }
    }
}
