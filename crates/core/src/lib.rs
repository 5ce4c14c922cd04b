//! kismatic-core: the pure middle of the tool. Facts in, findings and plans out; no I/O, no clock.
//!
//! - [`facts`]: what gatherers fill (node facts over SSH, Kubernetes and etcd facts) and the facts document.
//! - [`version`]: version parsing and comparison; [`summary`]: cluster version summary for `kismatic info`.
//! - [`need`]: which nodes need an upgrade; [`checks`]: findings; [`planner`]: the upgrade plan;
//!   [`gates`]: etcd clusters and the health gate of each component; [`render`]: simple text and JSON renderings of plans and findings; [`human`]: sizes and durations for people.
pub mod batching;
pub mod checks;
pub mod facts;
pub mod facts_check;
pub mod gates;
pub mod human;
pub mod need;
pub mod planner;
pub mod removed_api;
pub mod render;
pub mod skew;
pub mod summary;
#[doc(hidden)]
pub mod synth;
pub mod version;

pub use kismatic_release::Release;

#[cfg(test)]
mod tests;
