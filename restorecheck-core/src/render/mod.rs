//! Machine-readable renderings of a [`Report`](crate::Report) besides its JSON contract:
//! JUnit XML for CI dashboards ([`junit`]) and a Prometheus node_exporter textfile
//! ([`metrics`]).

pub mod html;
pub mod junit;
pub mod metrics;
