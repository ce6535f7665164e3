//! Hostile inputs: process.

#[allow(unused_imports)]
use super::common::*;
