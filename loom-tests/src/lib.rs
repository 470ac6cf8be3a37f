//! loom models of stampcache's concurrent parts. Only built with `--cfg loom`.
#![cfg(loom)]

#[path = "../../src/sync.rs"]
#[allow(dead_code)]
mod sync;

#[path = "../../src/core/local/epochs.rs"]
#[allow(dead_code)]
mod epochs;

#[path = "../../src/core/scope/chain.rs"]
#[allow(dead_code)]
mod chain;

#[path = "../../src/core/flight.rs"]
#[allow(dead_code)]
mod flight;

#[cfg(test)]
mod epochs_models;
#[cfg(test)]
mod flight_models;
#[cfg(test)]
mod scope_models;
