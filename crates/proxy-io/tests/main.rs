//! The embedding API end to end, one module per subject, in one test binary (under the release
//! profile's LTO each test binary compiles the whole proxy anew). `faults.rs` stays a binary of
//! its own: it counts this process's descriptors and tasks, which the others would disturb.

mod examples;
mod websocket;
