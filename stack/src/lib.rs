//! The `travel` command: the four services (`travel serve`, from the `travel` crate), and the
//! two commands that compose them with the gateway: [`up`] runs the whole stack in one
//! process, [`seed`] loads the original's data through the gateway. This crate is the only
//! one that depends on both the gateway and the services.

pub mod seed;
pub mod up;
