//! HTTP layer (in progress)
