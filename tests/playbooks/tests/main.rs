//! The playbooks, one module per subject, in one test binary: under the release profile's LTO
//! each test binary compiles the crates it uses anew, so one binary for all the subjects builds
//! in a fraction of the time one each did. `cargo test -p playbooks h2::` runs one subject; a new
//! playbook file needs its `mod` line here.

mod carrier;
mod errors;
mod flow_control;
mod forward;
mod fuzz;
mod gateway;
mod h2;
mod h2_fields;
mod h2_tunnel;
mod hooks;
mod http1;
mod layers;
mod modes;
mod reverse;
mod shutdown;
mod smuggling;
mod tls;
mod tunnel;
mod upstream_mode;
mod upstream_pool;
mod websocket;
