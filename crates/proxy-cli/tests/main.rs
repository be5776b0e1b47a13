//! sansproxy end to end, one module per subject, in one test binary: under the release
//! profile's LTO each test binary compiles the whole proxy anew, so one binary for every
//! subject builds in a fraction of the time one each did. The subjects share
//! `support`; `cargo test -p proxy-cli --test end_to_end h2::` runs one subject, and a new
//! subject file needs its `mod` line here.

mod support;

mod big;
mod connect;
mod faults;
mod gateway;
mod git;
mod h2;
mod http1;
mod limits;
mod malformed;
mod modes;
mod origin;
mod readme;
mod reverse;
mod slowloris;
mod smuggling;
mod soak;
mod startup;
mod tls;
mod transparent;
mod upstream;
mod upstream_mode;
mod upstream_pool;
mod websocket;
