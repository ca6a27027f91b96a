//! Integration tests: the real `relayctl` binary against real servers started on free loopback
//! ports by `support`. One binary, one module per command or concern.

mod support;

mod apply_cmd;
mod bad_input;
mod conformance;
mod failures;
mod file_store;
mod plan_apply;
mod plan_cmd;
