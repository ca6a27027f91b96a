//! Integration tests: the real `relayctl` binary against real servers started on free loopback
//! ports by `support`. One binary, one module per command or concern.

mod support;

mod plan_apply;
mod sync;
