//! Playbook harness (in progress)
