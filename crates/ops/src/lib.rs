//! kismatic-ops: the I/O side of the tool. Node fact probing over SSH now; the executor later.
pub mod contract;
pub mod probe;

pub use probe::{Probed, probe_nodes, probe_nodes_detailed};
