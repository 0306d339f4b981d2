//! Portable archives of recordings (see README).
