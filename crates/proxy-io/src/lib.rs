//! tokio driver (in progress)
