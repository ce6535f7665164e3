//! Hostile inputs: sql.

#[allow(unused_imports)]
use super::common::*;
