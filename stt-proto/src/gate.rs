//! State of a feature that a build may leave out (Cargo features `relay`, `rehandshake`,
//! `pmtud`).

use core::ops::{Deref, DerefMut};

/// Whether relays and hole punching are built in (feature `relay`).
pub(crate) const RELAY: bool = cfg!(feature = "relay");
/// Whether the in-session re-handshake is built in (feature `rehandshake`).
pub(crate) const REHANDSHAKE: bool = cfg!(feature = "rehandshake");
/// Whether path MTU discovery is built in (feature `pmtud`).
pub(crate) const PMTUD: bool = cfg!(feature = "pmtud");

/// An `Option<T>` that stays empty when `ON` is false: its accessors then return `None` as
/// a constant, so the compiler drops every code path that reads it (and what only those
/// paths reach), while the code still type-checks in every build.
pub(crate) struct Gated<T, const ON: bool>(Option<T>);

impl<T, const ON: bool> Gated<T, ON> {
    pub(crate) const NONE: Self = Gated(None);

    /// `v`, or nothing when the feature is left out.
    pub(crate) fn new(v: Option<T>) -> Self {
        Gated(v.filter(|_| ON))
    }

    /// Sets the state (a no-op when the feature is left out).
    pub(crate) fn set(&mut self, v: T) {
        if ON {
            self.0 = Some(v);
        }
    }

    pub(crate) fn as_ref(&self) -> Option<&T> {
        self.0.as_ref().filter(|_| ON)
    }

    pub(crate) fn as_mut(&mut self) -> Option<&mut T> {
        self.0.as_mut().filter(|_| ON)
    }

    pub(crate) fn is_none(&self) -> bool {
        self.as_ref().is_none()
    }
}

impl<T: Deref, const ON: bool> Gated<T, ON> {
    pub(crate) fn as_deref(&self) -> Option<&T::Target> {
        self.as_ref().map(|t| &**t)
    }
}

impl<T: DerefMut, const ON: bool> Gated<T, ON> {
    pub(crate) fn as_deref_mut(&mut self) -> Option<&mut T::Target> {
        self.as_mut().map(|t| &mut **t)
    }
}
