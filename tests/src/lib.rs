//! Test support for coroner's integration and end-to-end tests: cgroups the tests create and
//! remove, helper processes started like a runtime shim would, and the agent under test.

pub mod agent;
pub mod apiserver;
pub mod cgroups;
pub mod describe;
pub mod exposition;
pub mod fixtures;
pub mod http;
pub mod privileges;
pub mod prometheus;
pub mod runtime;
pub mod victim;
