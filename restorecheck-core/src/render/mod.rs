//! Machine-readable renderings of a [`Report`](crate::Report) besides its JSON contract:
//! JUnit XML for CI dashboards (`junit`) and a Prometheus node_exporter textfile
//! (`metrics`).

pub mod html;
pub(crate) mod junit;
pub(crate) mod metrics;
