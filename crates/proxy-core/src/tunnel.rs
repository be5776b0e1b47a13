//! Raw tunnel (in progress)
