//! Idle connections of the sync path, and the fork generation they were
//! made in: a forked child never uses nor closes its parent's (the sockets
//! are the parent's too, and a reply to the parent's call could be read in
//! the child), it opens its own.

/// At most `MAX` idle connections of type `T`.
pub struct IdlePool<T, const MAX: usize> {
    forks: u64,
    idle: Vec<T>,
}

impl<T, const MAX: usize> Default for IdlePool<T, MAX> {
    fn default() -> Self {
        Self {
            forks: 0,
            idle: Vec::new(),
        }
    }
}

impl<T, const MAX: usize> IdlePool<T, MAX> {
    /// An idle connection of this process, if any.
    pub fn take(&mut self) -> Option<T> {
        let forks = crate::fork::generation();
        if self.forks != forks {
            // Inherited across fork: left alone (never used, never closed).
            for conn in self.idle.drain(..) {
                std::mem::forget(conn);
            }
            self.forks = forks;
        }
        self.idle.pop()
    }

    /// Keeps `conn` for a later call (closes it when `MAX` are idle).
    pub fn put(&mut self, conn: T) {
        if self.forks != crate::fork::generation() {
            std::mem::forget(conn); // made before a fork (see `take`)
        } else if self.idle.len() < MAX {
            self.idle.push(conn);
        }
    }
}
