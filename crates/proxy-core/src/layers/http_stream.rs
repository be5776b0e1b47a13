//! HTTP stream layer (in progress)
