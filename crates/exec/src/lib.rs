//! The executor: turns an upgrade plan into an upgraded cluster, node by node, with health gates, etcd protection,
//! drains and a resumable journal.

pub mod error;
pub mod etcd;
pub mod events;
pub mod gather;
pub mod install;
pub mod lock;
mod ops;
pub mod poll;
pub mod run;
pub mod signals;
pub mod time;
