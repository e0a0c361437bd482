//! The migration path (see issue 3).
