//! End-to-end tests: a real server (in-process `run` on 127.0.0.1:0, or
//! the real `sotto` binary) and real clients over real TLS.

mod bad_input;
mod basics;
mod binary;
mod devices;
mod e2e;
mod e2e_devices;
mod e2e_groups;
mod e2e_keyshare;
mod e2e_restarts;
mod e2e_tamper;
mod errors;
mod groups;
mod keys;
mod limits;
mod load;
mod local_store;
mod mitm;
mod passwords;
mod persistence;
mod quotas;
mod raw;
mod reconnect;
mod remember;
mod retention;
mod screen;
mod scrollback;
mod status;
mod tokens;
mod trust;
mod tui;
