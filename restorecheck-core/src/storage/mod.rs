//! Object storage locations (placeholder).
