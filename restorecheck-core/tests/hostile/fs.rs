//! Hostile inputs: fs.

#[allow(unused_imports)]
use super::common::*;
